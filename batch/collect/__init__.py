"""Collecting premiums: imports, AutoPay, origination, returns and NOCs, coverage, notices."""
