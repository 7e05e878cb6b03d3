"""Sample data of `achbatch demo` (copies of sample_files/premiums.csv, autopay.csv and payments.csv;
tests/test_demo.py keeps them identical), shipped inside the package so an installed copy finds them."""
