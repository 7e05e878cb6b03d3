"""The bank: transport (SFTP, local folder), PGP, delivery of our files, fetching the bank's."""
