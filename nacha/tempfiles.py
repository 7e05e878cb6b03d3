"""The name prefix of a file being written before its atomic rename (nacha.writer; the host
application's own atomic writes and crash clean-up use the same one). A module of its own so that
code needing only the name does not import the writer and its record layouts."""
TMP_PREFIX = ".tmp-"
