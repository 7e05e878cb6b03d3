"""The business: premiums, payments, AutoPay, origination, returns and NOCs, coverage standing,
reports, persistence and bank transport. Imports `nacha`, never `jobs`."""
