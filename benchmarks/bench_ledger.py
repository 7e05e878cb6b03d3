"""The whole night against the machine's floor, in one run (issue 17).

    python benchmarks/bench_ledger.py [--payments N] [--db sqlite|postgresql] [--keep]

Generates N premiums, N one-time payments (portal, guest and phone; checking and savings; one bank
account per payment) and N AutoPay mandates (other members, their own premiums), then runs, each
step as its own process started from a small wrapper process (so the wrapper's
getrusage(RUSAGE_CHILDREN).ru_maxrss is that step's own peak RSS, and its wall time includes the
process start):

- achbatch, as a person runs it (the installed `achbatch` console script, else `python -m jobs`),
  settings from ACHBATCH_DATABASE__URL / ACHBATCH_PATHS__DATA_DIR / ACHBATCH_SECURITY__KEY:
  `import premiums`, `import payments`, `originate --date D` (the N payments), `send --date D`
  (the local-folder bank), `import autopay`, `autopay schedule --date DUE` (N pulls: the payments
  pay less than the premium, so the mandates' own premiums are all owed);
- the floor of each, plain Python with the standard `csv` module and the driver directly (sqlite3,
  or psycopg with COPY on PostgreSQL), in its own tables of the same database: parse the CSV and
  insert the rows in one transaction (premiums, payments, autopay); select the pending payments,
  format one 94-character entry line each with an f-string, write the file, mark the rows
  (originate); one set-based INSERT ... SELECT of N pulls (autopay schedule); copy the file's bytes
  into a folder with fsync (send). No validation, no encryption: the cost of moving the data at all;
- for `import premiums` and `import payments`, the same floor once more into achbatch's own tables
  (`premiums`; `bank_accounts` and `payments`, the payments' premium ids from one select): their
  indexes, unique keys, CHECKs and foreign keys, still nothing checked, hashed or encrypted, rolled
  back at the end so the later steps see achbatch's rows only. It splits each import's ratio into
  what the schema costs (floor in our tables / floor) and what achbatch's code costs on top
  (achbatch / floor in our tables);
- the start-up every step pays before its first row: `import premiums` of a header-only file (start
  Python, import achbatch, connect, check the schema, record an import run), best of three.

It prints each step's seconds, peak RSS, its floor's seconds and the ratio (the machine is shared
and noisy: compare ratios, not seconds). SQLite lives in a temporary folder; PostgreSQL is a new
database on the server of $ACHBATCH_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/
postgres), dropped afterwards.

Where the time goes (cProfile of the CLI imports of 100,000 rows, SQLite; this shared 2-core machine)
---------------------------------------------------------------------------------------------------
Before (branch `speed`, first commit; cProfile wall clock, profiler overhead included):
- `import payments` 75.5 s: the ORM bulk inserts (`session.execute(insert(Payment), rows)` and
  `insert(BankAccount).returning(...)`) 30.6 s, 40%: every row's parameters built by the ORM
  (`_collect_insert_commands`), then by the compiled statement (`construct_params`, a type processor
  call per value: five UTCDateTime values a row), RETURNING in insertmanyvalues batches; the account
  look-ups (`_AccountBook`) 7.7 s, loading ORM objects through IN lists whose 500 values are each
  coerced into a literal; the row checks (`parse_payment_row`) 9.3 s; reading the CSV records
  6.1 s; 101 commits (one per 1,000-row chunk, an fsync each with synchronous=FULL) 4.8 s; the keyed
  account hash computed twice for every new account (look-up, then insert), each time a new HMAC
  object keyed from scratch, 2.9 s.
- `import premiums` 22.3 s: the ORM bulk insert 8.8 s, row checks 4.0 s, CSV records 3.8 s, start-up
  imports 2.5 s.
- `import autopay` (not a target; in the bench because `autopay schedule` needs the mandates): one
  ORM flush per new bank account (to learn its id), 100,000 round trips: 84 s on SQLite, 766 s on
  PostgreSQL.
After (cProfile with a CPU-time clock, so the other helpers' load does not count):
- `import payments` 39.7 s CPU under the profiler: the row checks 12.1 s (about a third: regexes,
  `datetime.fromisoformat` and zone conversion, routing check digit, Luhn, every check of every row
  kept), the chunk's database work 20.4 s, of which the driver's `executemany` 2.7 s (mostly index
  maintenance: payments has five indexes, bank_accounts three) and SQLAlchemy rendering the
  expanding IN parameters of the look-ups (a bind name per value) about 4 s; AES-GCM per account
  about 1 s; CSV records 2.2 s.
- `import premiums` 16.2 s CPU under the profiler: row checks 6.2 s, CSV records 1.9 s, the chunk's
  database work 3.5 s (`executemany` 0.5 s), the rest start-up imports and the loop itself.
What changed: rows are loaded through the driver (`batch.store.db.bulk_insert`: COPY on PostgreSQL,
one prepared INSERT by `executemany` on SQLite, values converted by each column type's own bind
processor, a repeated value once), new accounts' ids selected back by their unique keyed hash;
5,000 rows per transaction instead of 1,000; the keyed hash computed once per row (the look-up's is
reused for the insert) from an HMAC keyed once per key and copied; look-up lists bound as one
expanding parameter; AutoPay mandates on new accounts wait for one bulk load of the chunk's
accounts. Still the same checks, encryption, idempotency, per-row rejections and rejects file.
Left: the per-row checks in Python are now about half of the CPU; next would be PostgreSQL
`= ANY(array)` / SQLite `json_each` look-ups (no bind name per value) and fewer calls per check.

Imports, next session (branch `speedimp`; N = 100,000; CPU seconds from a CPU-time clock, phases
timed in-process around the handler's methods, same machine and load, 5,000 rows a chunk; the
machine was shared with other sessions' tests, load 2-4 on 2 cores, so wall seconds are noisy):
Before (SQLite): `import premiums` 3.0 s CPU (+0.57 s start-up imports): row checks 0.64, the
chunks' database work 1.33 (of which the driver's load 0.71); `import payments` 10.6 s CPU
(+0.58): row checks 1.08, chunks 8.04 = account look-ups 1.0 + new accounts 3.22 (their load 2.62:
rows in random hash order, each value through a per-value memo that raised KeyError on every new
encrypted number; then ids selected back) + payments load 1.71 + the rest (premium and
confirmation look-ups, the loop) ~1.8; the remaining ~1.5 s reading CSV records, the duplicate
check and the garbage collector's full passes (see below).
Before (PostgreSQL): premiums 3.3 s CPU, 4.2 s wall in-process; payments 10.9 s CPU, 17.4 s wall:
account look-ups 2.15 CPU / 3.3 wall, new accounts 1.55 / 3.4 (ids selected back), payments COPY
0.76 / 2.5 (the server's foreign-key checks), ANALYZE of three tables at every doubling 1.1 wall.
cProfile of the CLI before: the expanding IN lists' per-value bind names
(`_process_parameters_for_postcompile`) were 4.5 of 38.8 profiled seconds; `gc` full collections
showed up as time inside whatever allocated (a frozen dataclass built per row).
What changed (every check of every row, the encryption of every account number, idempotent
re-runs, per-row rejections and the rejects file kept; the import tests unchanged and green):
- look-ups bound as ONE parameter (`batch.store.db.in_set`: PostgreSQL `= ANY(array)`, SQLite
  `IN (SELECT value FROM json_each(?))`, both served by the column's index), one statement per chunk;
- the cyclic garbage collector paused during an import, the young generations collected once per
  chunk (the full passes over the growing set of row objects were ~20% of the CPU; peak RSS as before);
- pure parses memoized (amounts, coverage months and due dates, instants, the routing check, the
  local submission date), one regex call for a good identifier, frozen rows filled through their
  dict (the generated __init__'s object.__setattr__ cost 1 us a row each), records as tuples,
  an ASCII row skips the surrogate search: payments' checks 1.08 -> 0.6 s, premiums' 0.64 -> 0.4 s;
- payments and premiums loaded as tuples; a binary value converted without the memo; new accounts
  loaded in the order of their unique index; their ids taken from the sequence before COPY
  (PostgreSQL) or known from max(id) before and last_insert_rowid() after when exactly consecutive
  (SQLite, under the write lock; selected back otherwise);
- premiums (only read by a payments import) analyzed once, not at every doubling;
- start-up: the returns module imported only when a blocked account is met; the schema check reads
  the head revision from the migration files and the version table with one query (Alembic was
  0.13 s of every command's start-up).
After (SQLite): premiums 2.0 s CPU (+0.54): checks 0.40, chunks 0.94 (load 0.58);
payments 7.2 s CPU (+0.49): checks 0.63, chunks 5.49 = look-ups 0.77 + new accounts 1.37 (load 1.18)
+ payments load 1.64 + the rest ~1.5.
After (PostgreSQL): premiums 1.9 s CPU, 3.4 s wall; payments 5.3 s CPU, 10.6 s wall: look-ups
0.96 / 1.46, new accounts 0.67 / 1.74, payments COPY 0.62 / 2.5, ANALYZE 0.9 wall.
This benchmark, `--imports-only`, main then this branch back to back (wall ratio / CPU ratio):
SQLite premiums 8.5x / 12.0x -> 11.6x / 8.4x (a wall time of 4.1 s for 2.6 s of CPU: the load),
payments 20.8x / 22.3x -> 19.1x / 16.3x; PostgreSQL premiums 13.5x / 16.9x -> 7.1x / 8.5x,
payments 33.9x / 34.6x -> 19.2x / 17.0x. Peak RSS 98-119 MB (was 110-132).
Where the rest goes, and why the targets (payments <= 6x, premiums <= 4x) are not met:
- SQLite's own insert work: 100,000 payments into the real table (two unique constraints, a
  unique partial index, five more indexes, CHECKs, foreign keys) take 1.4-1.75 s CPU in `executemany` alone against 0.35 s
  for the same rows in a plain table; bank accounts 0.85 s: with the floor at 0.5 s, 6x (3 s) leaves
  nothing for the checks, the keyed hash and AES-GCM per account, and start-up;
- PostgreSQL: the payments COPY waits ~1.9 s on the server (the foreign-key trigger of each row
  locks its premium and its account) and ANALYZE ~0.9 s; the other wall time is the load;
- start-up imports ~0.5 s against a floor of 0.35-0.45 s for premiums: SQLAlchemy ~0.15, the 27
  mapped models ~0.1 (declarative mapping), the `nacha` package ~0.09 (its __init__ imports the
  reader and layouts, pulled in by `nacha.calendar`), `batch.config` with pydantic ~0.07-0.1;
- Python per row: CSV record and dict ~3 us, checks 4-6 us, duplicate check and chunk bookkeeping
  ~1.5 us, the driver's conversions and COPY/executemany call ~4 us.

`autopay schedule` (issue 17 part 2; N = 100,000 mandates, SQLite, cProfile with a CPU clock)
-----------------------------------------------------------------------------------------------
Before: 41.2 s CPU under the profiler (29 s wall, 160x its floor; PostgreSQL 65 s, 176x): the
ORM bulk insert of the pulls 11.0 s (parameters built per row, a type processor call per value);
`debit_guard.verdicts` 12.6 s, of which the coverage standing of every policy 9.5 s (`policy_facts`
5.4 s through IN lists of 2,000 members, `assess_policy` 3.8 s); `autopay_draft_date` per row 4.3 s
(banking-calendar walk for the same due date 100,000 times); IN-list rendering about 5 s.
After: 1.7 s CPU in `schedule_autopay`, the rest start-up imports (about 0.8 s: SQLAlchemy, the
models, and `batch.run.wiring` importing every service for `wiring.guard`). One statement sorts
every candidate into a bucket in a temporary table (0.5 s on SQLite: one join, the covered cents
once per row through a MATERIALIZED CTE, the 'clean policy' clause), one INSERT ... SELECT creates
the plain pulls (0.8 s, nearly all of it maintaining the eight indexes of `payments`), one UPDATE
sets the first pulls' authorized amounts. The rules with few distinct inputs (the draft date of
each due date in the window, the SEC code of each mandate channel) are evaluated by the pure
functions and passed to SQL as values; only a policy the SQL cannot vouch for (a past premium not
paid on time, a returned or failed payment, a mandate signed on or after the due day, a pull above
its authorized amount, two premiums due in one run) goes through the per-row path and the pure rules
(tests/integration/test_autopay_set_based.py checks both paths agree and the SQL against the rules).
On PostgreSQL the same pass spent 2.8 s in the UPDATE of the mandates' first authorized amounts
(a correlated subquery over a temporary table without statistics): now UPDATE ... FROM after an
ANALYZE of the temporary table, 1.0 s; the INSERT of the pulls is 2.4-3.4 s there (three foreign
keys checked by trigger per row, eight indexes), the bucket statement 1.6 s.
Measured (one run each, this loaded machine; ratio = wall time, process start included):
  SQLite  100,000: before 28.95 s, 159.9x (floor 0.18 s) -> after 2.39 s, 25.3x (floor 0.09 s; 3.48 s
  and 23.7x against a 0.15 s floor in another run: the floor itself varies 2x with the load)
  PostgreSQL 100,000: before 65.44 s, 176.2x (floor 0.37 s) -> after 6.58 s, 17.7x (floor 0.37 s),
  client CPU 43.8 s -> 1.1 s (6.6x the floor's; the rest is the server's index and foreign-key work).
Left against the 4-6x target: process start (about 0.6 s: SQLAlchemy, the ORM models, pydantic
settings) and the cost of inserting into `payments` with its indexes and foreign keys, which the
floor's bare table does not have.

`send` (issue 17 part 2; the local-folder bank, one 9.5 MB file of 100,000 entries)
-------------------------------------------------------------------------------------
Before: 1.37 s wall (20x a copy + fsync of 0.07 s); under cProfile 2.5 s CPU of which 1.8 s imports:
`batch.run.wiring` imported every service (coverage, returns, origination, debit rules) for the
transport alone, `batch.store.fsutil` imported the NACHA writer and its layouts for one constant,
`import nacha` loaded the reader and writer, and reading the schema revision imported Alembic
(0.26 s) and parsed every migration script for the head (0.06 s).
After: wiring imports a service when asked for it, nacha loads its reader and writer on first use,
the revision is one query and the head read from the migration files (a test holds it to
Alembic's own head): 0.90-1.07 s on SQLite (18.6-19x), 1.65 s on PostgreSQL (31x; CPU 0.88 s, 19x). The rest: SQLAlchemy + the ORM models + pydantic (about 0.6 s),
then marking the file's payments sent (0.2 s) and the copy with fsync.

The whole night, 2026-12-04 (one run each, wall ratio / CPU ratio, peak RSS)
------------------------------------------------------------------------------
N = 100,000, SQLite: import premiums 6.6x / 6.8x 96 MB; import payments 15.0x / 15.1x 112 MB;
originate 15.7x / 16.3x 160 MB; send 18.1x / 18.9x 92 MB; import autopay 33.5x 124 MB; autopay
schedule 27.3x / 29.5x 96 MB.
N = 100,000, PostgreSQL: import premiums 8.6x / 8.7x 102 MB; import payments 22.3x / 15.9x 116 MB;
originate 15.6x / 12.3x 161 MB; send 28.5x / 17.5x 117 MB; import autopay 41.8x / 40.0x 141 MB;
autopay schedule 17.6x / 6.1x 105 MB (client CPU; the server's work is not in the CPU ratio).
N = 1,000,000, PostgreSQL: import premiums 15.7 s, 10.6x / 11.2x, 202 MB; import payments 66.8 s,
29.7x / 22.0x, 217 MB; originate 117.6 s, 17.9x / 16.9x, 889 MB (over the 400 MB target); send
(4 files) 8.1 s, 133x / 35x, 171 MB; import autopay 138.1 s, 79.3x / 66.0x, 242 MB; autopay schedule
67.1 s, 38.9x / 14.8x, 333 MB.

Originate's validation pass, 2026-12-05 (sampled RSS and the running function every 0.5 s; SQL timed
per statement by an engine event; cProfile with a CPU clock)
----------------------------------------------------------------------------------------------------
Before, 300,000 payments on SQLite (2/3 first-use WEB: 200,000 held and prenoted): peak 311 MB. The
process starts at about 74 MB; `_request_prenotes` built a dict of every wanted account (+84 MB,
held while 200,000 prenote rows were bulk-loaded: 4.5 s); `_review_late_holds` fetched every held
payment with its premium (+82 MB at once); `pending_prenotes` fetched every prenote row with its
encrypted account (+48 MB, held for the whole file build); closing a file kept its plain bytes,
their encrypted copy and the driver's copy (+87 MB for a 23 MB file). At 1,000,000 on PostgreSQL
the same lists made the 889 MB.
After: the prenote requests are one INSERT ... SELECT (each account's first asker, mandate before
payment and then by id, chosen by ROW_NUMBER() OVER (PARTITION BY account)) and one UPDATE of the
accounts it asked for; holds, releases and the risk-accepted events are an INSERT ... SELECT of the
events then an UPDATE of the rows, from the same select; the late holds are read 5,000 at a time
(their release day computed once per prenote day); tonight's prenotes come from one streamed select
(paging by `id > last ... LIMIT` made PostgreSQL sort the remaining 667,000 prenotes for every page,
1.5 s a page); a closed file's plain bytes are let go before the encrypted copy is flushed.
tests/integration/test_validation_set_based.py holds the INSERT ... SELECT to the rule written out
row by row on random ledgers (it caught 4 deliberate breakages), with tests/integration/
test_validation.py unchanged.
300,000 on SQLite: peak 311 MB -> 186 MB, flat at about 92 MB until the first file closes; user
CPU 11.8 s -> 10.8 s. 100,000 on SQLite (cProfile, CPU clock): the per-entry work is now the
largest part (write the entry 0.75 s own time, decrypt the account 0.9 s, upper-case and cut the
holder name 0.4 s, record the entry 0.36 s, the layout's make and add 0.6 s, under the profiler),
then the SQL (about 2 s: the prenote INSERT ... SELECT 0.44 s, the hold UPDATE 0.29 s, the file's
state UPDATEs 0.28 s, the payments' streamed select 0.19 s), then start-up (0.5-0.6 s).
1,000,000 on PostgreSQL, per statement: UPDATE of the 667,000 prenoted accounts 48 s, UPDATE of the
667,000 held payments 49 s, their events' INSERT ... SELECT 15 s, the prenotes' 15 s: the server
writing a new version of each row and an entry in each index (payments has eight), which the
floor's bare table does not have; the client's CPU for all of originate is 12 s.

The whole night, 2026-12-05, after this session's merges (one run each; the machine shared with
other benchmarks, load 3-5 on 2 cores: compare ratios)
----------------------------------------------------------------------------------------------------
N = 100,000, SQLite: import premiums 2.13 s, 6.5x / 6.8x, 96 MB; import payments 6.58 s, 14.0x /
14.0x, 110 MB; originate 4.71 s, 11.2x / 11.6x, 117 MB; send 0.91 s, 17.1x / 18.0x, 92 MB; import
autopay 6.26 s, 16.2x / 15.6x, 107 MB; autopay schedule 2.19 s, 24.1x / 26.4x, 77 MB.
N = 100,000, PostgreSQL: import premiums 2.87 s, 6.9x / 8.0x, 102 MB; import payments 8.73 s, 21.9x
/ 15.3x, 115 MB; originate 9.47 s, 11.9x / 5.3x, 121 MB; send 1.43 s, 26.7x / 15.9x, 117 MB; import
autopay 8.23 s, 18.5x / 14.8x, 112 MB; autopay schedule 4.98 s, 14.5x / 4.8x, 80 MB.
N = 1,000,000, PostgreSQL (main with the validation pass and the import changes, before the AutoPay
schedule's): import premiums 71.3 s, 15.8x / 12.5x, 203 MB; import payments 163.3 s, 51.6x / 24.6x,
217 MB; originate 96.5 s, 14.9x / 5.0x, 185 MB; send (4 files) 7.85 s, 134x / 24.6x, 172 MB; import
autopay 90.4 s, 24.8x / 25.3x, 213 MB; autopay schedule 80.9 s, 48.0x / 13.7x, 333 MB. The AutoPay
schedule's own change (pulls counted in the database instead of returned to Python, the mandates
updated in id order) measured on its branch with `--steps autopay`: 1,000,000 on PostgreSQL 76.5 s,
35.8x, 334 MB -> 59.7 s, 19.1x, 80 MB (74.2 s, 31.7x, 80 MB in a second run on a busier machine).
Every step is now under 400 MB at 1,000,000. The ratios are not at the targets: see "where the rest
goes" above (start-up about 0.5 s, SQLite's and PostgreSQL's own index and foreign-key work on the
real tables, every row's checks, encryption and validation, which the floor does not do).

PostgreSQL's side of the night, 2026-12-05, evening (SQL timed per statement by an engine event;
plans, buffers and WAL from auto_explain and EXPLAIN (ANALYZE, BUFFERS, WAL); client time sampled
by py-spy; the server on its defaults: shared_buffers 128 MB, max_wal_size 1 GB, jit on)
----------------------------------------------------------------------------------------------------
- JIT: the server compiled every statement estimated above its thresholds (at 1,000,000, most of
  the night's set-based ones); originate's debit screen paid 0.19 s of JIT for a 0.22 s run at
  100,000. Now off on every connection of achbatch's engine (`db.make_engine`), where returns and
  the AutoPay schedule had turned it off for their own transactions: originate 100,000 8.0-9.8 s
  -> 7.8-8.1 s.
- No room to update in place: `bank_accounts` and `autopay_mandates` are loaded by the imports and
  updated the same night in columns no index covers, but their pages were full, so 0 of 66,667
  updates were heap-only (each wrote a new version elsewhere and an entry in every index).
  Migration 0017 leaves half of each page free: the prenoted accounts' UPDATE 1.03 s -> 0.27 s at
  100,000 (66,667 of 66,667 heap-only; at fill factor 70, 43,483). Two rounds each with and without,
  100,000: originate 10.8-11.0 s -> 9.7-9.9 s, autopay schedule 4.6-4.7 s -> 3.7-3.8 s, the imports
  unchanged.
- Statistics: after the prenotes' INSERT ... SELECT the planner still took the table for a few
  hundred rows and visited their 666,667 accounts by index in hash order, writing 360,000 pages of
  `bank_accounts` in and out of the 128 MB of shared buffers: 5.7 s. An ANALYZE of prenotes in
  between (0.08 s): 1.6-1.9 s; originate 1,000,000 78.8 s -> 70.8 s.
- Look-ups by `= ANY(array)`: psycopg adapted a list of 5,000 account hashes in about 12 ms, element
  by element, half of each chunk's look-up; now the text of an array literal cast to the column's
  type (`db.in_set`): 1 ms to build, 2-3 ms for the server to read. Import payments 100,000
  6.8-7.0 s -> 6.2-6.4 s, import autopay 5.9-6.1 s -> 5.4 s.
- COPY in binary (`db.copy_rows`, when every column's type allows it): formatting rows as text
  (timestamps with their zone, bytea as hex) was 19% of a payments import's samples; client CPU of
  import premiums 1.57-1.61 s -> 1.28-1.48 s, import payments 3.48-3.62 s -> 2.77-3.14 s (three
  rounds each); the wall time is the server's and did not move.
Where originate's 74-76 s at 1,000,000 go now (one run, per statement): the UPDATE of 666,667 held
first-use payments 13.8-14.7 s, the prenotes' INSERT ... SELECT 6.5-7.4 s and their UPDATE to
in_file 7.2-7.4 s (three files), the hold and risk events 5.4-5.6 s, the payments' UPDATE to in_file
4.6 s, the debit screen 2.3 s, the client 10 s of CPU (decrypting and writing the entries). The
held payments' UPDATE wrote 1.7 GB of WAL (166,232 full-page images) and dirtied 468,601 buffers for
about 26,000 pages of table and indexes: `payments` has nine indexes and a state that three index
predicates read, so no update of a payment is heap-only, and 128 MB of shared buffers hold a
fraction of what it touches. max_wal_size 8 GB halved that WAL but not the time (75.6 s).
The AutoPay schedule at 1,000,000 (35 s) is mostly the INSERT of the pulls (23 s): the foreign-key
triggers checked each pull's premium, its account and its AutoPay premium (the same premium again),
about 4 s a million each (measured on a copy of the insert). Import payments 1,000,000: client CPU
33.6 s -> 24.2 s.
SQLite, import payments 100,000 (py-spy, wall samples): the driver's executemany 39% (the rows of
`payments` and `bank_accounts` into their indexes), AES-GCM 6%, commits 5%, start-up 9%; import
premiums: executemany 24%, start-up 26%, the row checks 12%. Project modules compiled at each
start (PYTHONDONTWRITEBYTECODE is set on these machines) cost about 0.1 s of premiums' 1.7 s, 0.02 s of send's.

The whole night, 2026-12-05, evening (one run each, machine otherwise quiet; wall ratio / CPU ratio)
----------------------------------------------------------------------------------------------------
N = 100,000, SQLite: import premiums 1.78 s, 5.8x / 5.9x, 96 MB; import payments 5.35 s, 12.7x /
12.9x, 110 MB; originate 3.84 s, 11.1x / 11.6x, 117 MB; send 0.76 s, 15.7x / 16.8x, 92 MB; import
autopay 5.05 s, 14.9x / 14.1x, 107 MB; autopay schedule 1.83 s, 24.7x / 26.9x, 78 MB.
N = 100,000, PostgreSQL: import premiums 1.85 s, 6.6x / 5.9x, 101 MB; import payments 6.44 s, 20.1x
/ 10.1x, 115 MB; originate 7.18 s, 10.4x / 5.4x, 121 MB; send 1.31 s, 27.3x / 16.6x, 117 MB; import
autopay 5.71 s, 19.1x / 10.2x, 112 MB; autopay schedule 3.75 s, 12.5x / 4.7x, 79 MB.
N = 1,000,000, PostgreSQL: import premiums 11.92 s, 8.8x / 7.6x, 202 MB; import payments 57.56 s,
26.8x / 14.0x, 216 MB; originate 75.83 s, 11.5x / 4.6x, 184 MB; send (4 files) 8.21 s, 77.1x / 15.7x,
172 MB; import autopay 53.38 s, 27.6x / 15.4x, 213 MB; autopay schedule 35.29 s, 22.7x / 5.2x, 79 MB.

SQLite's rows, 2026-12-06 (py-spy; `EXPLAIN` of the INSERTs; each table's own DDL timed against a
bare copy with executemany in chunks of 5,000, as the imports load)
----------------------------------------------------------------------------------------------------
- CHECKs of value lists: SQLite codes `channel IN ('portal', ...)` with more than two constants as
  a look-up table (`OpenEphemeral` in the INSERT's program) that it fills once per execution of the
  statement, and executemany executes the INSERT once per row: 100,000 rows of `payments` (four such
  lists) 1.04 s, the same table without any CHECK 0.38 s, a bare table 0.28 s. Migration 0018 writes
  every such CHECK as equalities joined by OR, the same rule (0.40 s); `premiums`, `bank_accounts`
  and `autopay_mandates` gained the same way. Import payments 100,000, three rounds each on the same
  database but for the CHECK text: 4.74-4.76 s -> 3.90-3.91 s. PostgreSQL evaluates such a list
  against its constant array per row without building anything (1,000,000 payments inserted with
  and without the four CHECKs: 6.1 s and 6.6 s, within noise): its constraints are left as they are.
- Left on SQLite, import payments 100,000 (3.9 s): the driver's executemany 1.3 s (payments 0.7 s:
  against 0.24 s for a bare table, its nine indexes and foreign keys; bank accounts 0.6 s), start-up
  0.35-0.45 s, AES-GCM per account 0.3 s, 20 commits 0.26 s, CSV records and row checks ~0.5 s.
  A larger WAL before each checkpoint (10,000 or 100,000 pages): 4.0 -> 3.9 s, within noise, not kept.
- Originate 100,000 (SQLite): the entry of each payment and prenote built by position
  (`Layout.maker`) instead of a dict of keyword values: 3.71-3.84 s -> 3.62-3.80 s, four rounds each,
  about 2% (a decrypt path with each key's associated data built once, and the trace number and the
  name inline, were within noise back to back, 3.65-3.83 s either way: not kept). Its SQL is 1.6 s
  of 3.3 s: the entries' load 0.35 s (a bare table: 0.12 s), the prenotes' INSERT ... SELECT 0.26 s,
  the holds 0.17 s and their events 0.14 s, the payments' streamed select 0.13 s.
PostgreSQL, 1,000,000 payments (INSERT ... SELECT of the same rows into `payments`, two rounds):
with every foreign key 13.0-17.0 s (noisy), without any trigger 4.8-6.6 s; each foreign key about
1-2 s a million, even one whose column is NULL (its trigger still fires per row). The second key
from an AutoPay pull to its premium (always the pull's own `premium_id`) is now a CHECK (migration
0019): 1,000,000 pulls 21.0-21.5 s -> 18.1-18.6 s. Making the unique index of `autopay_premium_id`
partial (its NULLs left out) gained nothing on an UPDATE of 66,667 payments to `held` (0.68-0.84 s
as it is, 0.72-0.78 s partial, three rounds at 100,000): NULLs go to the index's right edge.
The fill factor of `bank_accounts` (50 since migration 0017), A/B at 1,000,000, two rounds each:
import payments 48.8-52.1 s at 50, 48.3-48.4 s at 100; originate 66.5-67.1 s at 50, 71.8-73.9 s at
100: the night is faster at 50, kept. Import chunks of 10,000 or 20,000 rows instead of 5,000 on
SQLite at 100,000 (three rounds): 4.19-4.30 s -> 4.29-4.39 s and 4.41-4.55 s, peak RSS 112 ->
133 and 177 MB: kept at 5,000.

The whole night, 2026-12-06 (one run each, machine otherwise quiet; wall ratio / CPU ratio)
------------------------------------------------------------------------------------------
N = 100,000, SQLite: import premiums 1.45 s, 5.2x / 5.2x, 96 MB; import payments 4.03 s, 10.1x /
9.9x, 110 MB; originate 3.29 s, 10.0x / 10.3x, 116 MB; send 0.67 s, 15.8x / 17.2x, 92 MB; import
autopay 4.20 s, 12.7x / 12.2x, 107 MB; autopay schedule 1.53 s, 22.2x / 24.7x, 77 MB (a second run:
5.1x, 10.3x, 10.1x, 15.9x, 13.0x, 22.8x).
N = 100,000, PostgreSQL: import premiums 1.68 s, 6.6x / 5.6x, 101 MB; import payments 5.46 s, 18.2x
/ 8.8x, 115 MB; originate 6.46 s, 9.8x / 4.7x, 121 MB; send 1.26 s, 25.4x / 15.6x, 117 MB; import
autopay 5.19 s, 17.7x / 9.3x, 112 MB; autopay schedule 3.34 s, 12.1x / 4.9x, 79 MB.
N = 1,000,000, PostgreSQL: import premiums 10.55 s, 8.1x / 6.5x, 202 MB; import payments 49.39 s,
19.8x / 8.0x, 216 MB; originate 70.44 s, 12.6x / 4.3x, 184 MB; send (4 files) 7.61 s, 118x / 29.5x,
171 MB; import autopay 46.99 s, 24.9x / 14.5x, 213 MB; autopay schedule 29.39 s, 20.7x / 4.5x, 79 MB.
Send at 1,000,000 is mostly the UPDATE of the files' 333,333 payments to `sent` (at 100,000: 0.50 s
of its 1.2 s): a payment's state is read by two index predicates, so no update of it is heap-only.

How much of each ratio the schema and the start-up take, 2026-12-06, later (a machine about 1.3x
slower than the one above: the bare floor of payments 0.54 s at 100,000 against 0.40-0.46 s)
----------------------------------------------------------------------------------------------------
The floor in our tables (above) and the start-up line, measured in one run of this script (the
PostgreSQL payments figures of this floor overstated it: it took its accounts' ids with the per-row
sequence look-up fixed below; corrected figures after the next table):
  N = 100,000, SQLite: floor in our tables, premiums 0.61 s = 1.7x the bare floor, payments 2.08 s =
  3.9x; start-up 0.66 s = 1.9x the premiums floor, 1.2x the payments floor. achbatch 2.20 s (6.3x)
  and 5.93 s (11.0x): 3.6x and 2.9x the floor in our tables.
  N = 100,000, PostgreSQL: premiums 0.92 s = 2.5x, payments 3.55 s = 8.3x; start-up 0.78 s = 2.2x
  and 1.8x. achbatch 2.74 s (7.6x) and 7.70 s (17.9x): 3.0x and 2.2x the floor in our tables.
So on PostgreSQL the schema alone puts `import payments` at 7.4x its floor (corrected, below), over
the 6x target with no check, hash or encryption done at all; on SQLite the schema and the start-up together take 5.1x of
the 6x, leaving 0.5 s for achbatch's own work on every row (the checks, the keyed hash, AES-GCM, the
look-ups, the chunks' transactions), which now takes about 3.2 s. `import premiums`: the schema and
the start-up take 3.6x (SQLite) and 4.7x (PostgreSQL) of the 4x target. The schema's costs are its integrity: on PostgreSQL, 200,000 payments inserted by INSERT
... SELECT into copies of the table took 3.7-3.9 s with its three foreign keys, 1.3-1.8 s without
them, 0.30-0.36 s into a bare table (the indexes and CHECKs); each key alone, over the copy without
keys: to premiums +0.8 s, to bank_accounts +0.8-0.9 s, to the retried payment (always NULL here)
+0.2 s. Each checked key locks the row it points to (FOR KEY SHARE), which writes that row's page.
Changed: the ids of an import's new bank accounts (PostgreSQL) come from `nextval` of the sequence
found once, in a subquery run before the rows, instead of `nextval(pg_get_serial_sequence(...))`,
which looked the sequence up again for every row: 100,000 ids 0.30 s -> 0.05 s (psql), the
statements of import payments 1,000,000 37.2 s -> 35.7 s (that statement 2.9 s -> out of the top).
Where a night's 1,000,000 on PostgreSQL spend their server time (statements timed by the server's
log, one run each): import payments: COPY payments 16.4-17.5 s, COPY bank_accounts 7.9 s, the
look-ups of accounts 3.8 s, of premiums 2.1 s, ANALYZE 1.8-2.0 s; originate: UPDATE payments (held,
then in_file) 21.0 s, COPY file_entries 13.6 s (three foreign keys a row: the file, the payment,
the prenote), the prenotes' INSERT 8.7 s and UPDATE 8.0 s, the payment events 6.7 s; autopay
schedule: the pulls' INSERT 21.4 s, the bucket statement 8.9 s (1,000,000 candidates, two index
probes each; its hash join spills at the default work_mem, and 64 MB was no faster: 10.7 s); send:
UPDATE payments to sent 6.0 s of 8.5 s. Every UPDATE of a payment's state writes a new version of the
row and an entry in each of its indexes that holds it (seven of nine), never heap-only: two index
predicates read the state (`ix_payments_pending`, which origination finds its work by, and
`ux_payments_open_retry`, at most one open re-presentment). Making those updates heap-only needs the
pending work found another way (a queue table of pending payments, say): a change of the schema and
of origination's queries, left for a decision.
The whole night, 2026-12-06, later (this slower machine, one run each; the 100,000 runs before the
key-id change, the 1,000,000 run after both changes; wall ratio / CPU ratio; "tables": the floor in
our tables, and achbatch as a multiple of it)
  N = 100,000, SQLite: start-up 0.69 s; import premiums 2.19 s, 6.9x / 7.0x, 96 MB, tables 0.61 s
  (1.9x), 3.6x of it; import payments 6.66 s, 12.4x / 12.5x, 111 MB, tables 1.92 s (3.6x), 3.5x;
  originate 4.74 s, 11.1x / 11.6x, 117 MB; send 0.95 s, 16.7x; import autopay 6.83 s, 16.2x, 108 MB;
  autopay schedule 2.11 s, 21.4x / 23.0x, 78 MB, tables 0.69 s (7.0x), 3.1x.
  N = 100,000, PostgreSQL: start-up 0.82 s; import premiums 2.67 s, 8.3x / 7.3x, 102 MB, tables
  0.89 s (2.8x), 3.0x; import payments 7.59 s, 20.8x / 11.8x, 115 MB, tables 3.55 s (9.7x), 2.1x;
  originate 8.57 s, 10.9x / 5.4x, 122 MB; send 1.52 s, 29.5x / 16.0x; import autopay 6.84 s, 18.5x /
  11.8x, 112 MB; autopay schedule 4.01 s, 10.7x / 4.6x, 80 MB, tables 2.21 s (5.9x), 1.8x.
  N = 1,000,000, PostgreSQL: start-up 0.70 s; import premiums 18.28 s, 10.0x / 9.0x, 202 MB, tables
  8.48 s (4.7x), 2.2x; import payments 72.74 s, 33.9x / 19.2x, 216 MB, tables 37.79 s (17.6x), 1.9x;
  originate 83.78 s, 13.0x / 5.1x, 184 MB; send (4 files) 7.73 s, 126x / 23.1x, 172 MB; import autopay
  66.40 s, 33.2x / 21.5x, 213 MB; autopay schedule 36.99 s, 20.4x / 4.8x, 80 MB, tables 29.91 s
  (16.5x), 1.2x. (Another run the same hour, before the key-id change: import payments 68.41 s,
  tables 41.84 s; originate 86.60 s; autopay schedule 37.10 s.)
  The PostgreSQL "tables" figures of payments above overstated that floor: it took its accounts' ids
  with the per-row sequence look-up fixed in achbatch (below). Corrected, run again an hour later
  on a busier host (everything about 1.35x slower, the start-up 1.12-1.18 s): N = 100,000, tables
  premiums 1.11 s (2.7x), payments 4.68 s (7.4x), pulls 2.96 s (5.5x), achbatch 3.1x, 2.2x and 1.6x
  of it (import premiums 3.47 s, 8.3x; import payments 10.11 s, 16.1x; autopay schedule 4.67 s,
  8.7x); N = 1,000,000, tables 11.94 s (4.8x), 44.28 s (14.5x), 40.70 s (18.3x), achbatch 2.1x,
  2.0x and 1.3x of it (import premiums 24.74 s, 10.0x; import payments 89.80 s, 29.4x; originate
  92.56 s, 11.1x / 4.4x; send 8.98 s; import autopay 75.14 s, 25.2x; autopay schedule 51.85 s, 23.3x
  / 5.7x; peak RSS as above, at most 216 MB).
At 1,000,000 on PostgreSQL the schema's own cost is 4.8x (premiums), 14.5x (payments) and 18.3x
(the pulls) of the bare floors, and achbatch runs at 1.3-2.1x the floor in its own tables: the 4-6x
targets against the bare floors cannot be met while the ledger keeps its foreign keys, unique keys
and indexes, whatever achbatch's code does.
Tried this session and not kept:
- reading, checking and parsing the rows in a thread a chunk ahead of the loading (the rows in file
  order, errors and memory as before): the loading never waited for the reading (0.04 s in all), but
  its own time grew by about what it no longer did, the two threads handing the GIL back and forth
  each time the loading waits on the driver. Import payments 100,000, three rounds each, before /
  after: PostgreSQL 8.20, 9.03, 8.53 s / 8.43, 9.18, 7.99 s (a 0.5 ms switch interval: no better);
  SQLite 6.67, 6.60, 6.20 s / 6.66, 7.17, 6.49 s.
- no ANALYZE while an import grows a table (PostgreSQL): the look-ups by unique columns kept their
  indexes and the statements lost 0.64-0.76 s of ANALYZE at 100,000, but the wall time moved within
  its noise (7.62-7.73 s against 7.93-8.06 s), and originate, run right after the import, plans on
  those statistics. ANALYZE of only the looked-up columns: bank_accounts 0.55 s either way at
  1,000,000 (the sample's pages, not the columns, are its cost).
- start-up: `send` with nothing to send, best of seven, 0.73-0.78 s with PYTHONDONTWRITEBYTECODE=1
  (as on these machines: the project's modules compiled at every start) and 0.68 s with bytecode
  cached; of the imports (0.51-0.68 s under -X importtime), SQLAlchemy 0.17-0.22 s and the project's
  own modules 0.18-0.25 s, the ORM models' declarative mapping the largest (75-105 ms); a layout or
  code table loaded when not needed was 10-25 ms at most (nacha.layouts_other for originate).
"""
from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from batch.rules.counts import counted  # noqa: E402  (the checkout's, even without the package installed)

ORIGINATE_ON = "2026-12-01"  # a Tuesday, a Fed banking day: the payments' submission date
DUE_DRAFT = "2026-12-23"  # a Wednesday: the draft date of the premiums of coverage month 2027-01
KEY_B64 = base64.b64encode(bytes(range(32))).decode()  # a throwaway benchmark key, never for real data
ROUTINGS = ("011000015", "021000021", "026009593", "011401533", "091000019")
CHANNELS = ("portal", "guest", "phone")


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def generate(folder: str, n: int) -> dict[str, str]:
    """premiums.csv (2N rows: members paying once and AutoPay members), payments.csv (N),
    autopay.csv (N). Payments pay part of their premium, so nothing stops the AutoPay pulls."""
    paths = {k: os.path.join(folder, f"{k}.csv") for k in ("premiums", "payments", "autopay")}
    with open(paths["premiums"], "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("member_id", "member_name", "plan_id", "coverage_month", "amount_due", "subsidy", "binder"))
        for i in range(n):
            w.writerow((f"M{i:09d}", f"Member {i}", "HLTH-SILVER-01", "2027-01", f"{400 + i % 300}.{i % 100:02d}",
                        ("none", "aptc", "connectorcare")[i % 3], "no"))
    with open(paths["payments"], "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("confirmation_id", "submitted_at", "channel", "member_id", "plan_id", "coverage_month", "amount",
                    "routing_number", "account_number", "account_type", "account_holder"))
        for i in range(n):
            w.writerow((f"PC-{i:09d}", f"{ORIGINATE_ON}T{8 + i % 12:02d}:{i % 60:02d}:00-05:00", CHANNELS[i % 3],
                        f"M{i:09d}", "HLTH-SILVER-01", "2027-01", f"{50 + i % 200}.{i % 100:02d}",
                        ROUTINGS[i % len(ROUTINGS)], f"{(i * 7919) % 10**10 + 10**9:010d}",
                        "savings" if i % 4 == 0 else "checking", f"Member {i}"))
    with open(paths["autopay"], "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("member_id", "plan_id", "routing_number", "account_number", "account_type", "account_holder",
                    "authorized_at", "channel"))
        for i in range(n):
            w.writerow((f"A{i:09d}", "HLTH-SILVER-01", ROUTINGS[i % len(ROUTINGS)],
                        f"{(i * 7907) % 10**10 + 2 * 10**10:011d}", "savings" if i % 4 == 0 else "checking",
                        f"Autopay Member {i}", "2026-11-02T09:00:00-05:00", ("web", "paper")[i % 2]))
    # The AutoPay members' premiums (the same file format, a second file: imported with the mandates)
    paths["premiums_autopay"] = os.path.join(folder, "premiums_autopay.csv")
    with open(paths["premiums_autopay"], "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(("member_id", "member_name", "plan_id", "coverage_month", "amount_due", "subsidy", "binder"))
        for i in range(n):
            w.writerow((f"A{i:09d}", f"Autopay Member {i}", "HLTH-SILVER-01", "2027-01", f"{300 + i % 300}.00",
                        "none", "no"))
    return paths


# ---------------------------------------------------------------------------------------------
# The floor: csv + the driver, nothing else
# ---------------------------------------------------------------------------------------------

FLOOR_TABLES = {
    "premiums": ("floor_premiums", ("member_id", "member_name", "plan_id", "coverage_month", "amount_due",
                                    "subsidy", "binder")),
    "payments": ("floor_payments", ("confirmation_id", "submitted_at", "channel", "member_id", "plan_id",
                                    "coverage_month", "amount", "routing_number", "account_number",
                                    "account_type", "account_holder")),
    "autopay": ("floor_mandates", ("member_id", "plan_id", "routing_number", "account_number", "account_type",
                                   "account_holder", "authorized_at", "channel")),
}


def _driver(url: str):
    if url.startswith("sqlite"):
        import sqlite3

        return sqlite3.connect(url.split("///", 1)[1]), "sqlite"
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")), "postgresql"


def floor_setup(url: str) -> None:
    conn, db = _driver(url)
    serial = "INTEGER PRIMARY KEY" if db == "sqlite" else "BIGSERIAL PRIMARY KEY"
    with conn:
        cur = conn.cursor()
        for table, cols in FLOOR_TABLES.values():
            extra = ", state TEXT NOT NULL DEFAULT 'pending'" if table == "floor_payments" else ""
            cur.execute(f"CREATE TABLE {table} (id {serial}, {', '.join(c + ' TEXT' for c in cols)}{extra})")
        cur.execute(f"CREATE TABLE floor_pulls (id {serial}, member_id TEXT, plan_id TEXT, amount_cents BIGINT, "
                    "state TEXT)")
    conn.close()


def floor_import(url: str, kind: str, path: str) -> int:
    table, cols = FLOOR_TABLES[kind]
    conn, db = _driver(url)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        n = _load(conn, db, table, cols, list(reader) if db == "sqlite" else reader)
    conn.commit()
    conn.close()
    return n


# The floor in achbatch's own tables: the same plain csv + driver load, into the real `premiums`,
# `bank_accounts` and `payments` (their indexes, unique keys, CHECKs and foreign keys), with the
# values converted the simplest way and nothing checked, hashed or encrypted; the premium ids of the
# payments from one select. It measures what the schema itself costs, apart from achbatch's code.
# Its rows (ids, member and confirmation ids prefixed F) are rolled back at the end, so the later
# steps see achbatch's rows only: the commit (one fsync) is not in it.

def _floor_values(db: str):
    now = "2026-12-01 00:00:00+00:00" if db == "postgresql" else "2026-12-01 00:00:00.000000"
    return now, ("f" if db == "postgresql" else 0)


def _cents(amount: str) -> int:
    dollars, _, cents = amount.partition(".")
    return int(dollars) * 100 + int((cents + "00")[:2])


def _load(conn, db: str, table: str, cols: tuple[str, ...], rows) -> int:
    """`rows` into `table` through the driver (executemany on SQLite, COPY on PostgreSQL), in the
    connection's transaction; how many."""
    if db == "sqlite":
        return conn.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                rows).rowcount
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as cp:
        for row in rows:
            cp.write_row(row)
            n += 1
    return n


def _begin_in_our_tables(conn, db: str) -> None:
    """SQLite: foreign keys on, as on achbatch's connections, and the write lock taken now."""
    if db == "sqlite":
        conn.isolation_level = None
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")


def floor_schema_import(url: str, kind: str, path: str) -> int:
    conn, db = _driver(url)
    now, false = _floor_values(db)
    _begin_in_our_tables(conn, db)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        if kind == "premiums":
            rows = []
            for member, name, plan, month, amount, subsidy, _binder in reader:
                y, m = int(month[:4]), int(month[5:7])
                due = f"{y - (m == 1)}-{12 if m == 1 else m - 1:02d}-23"
                rows.append(("F" + member, name, plan, month + "-01", _cents(amount), subsidy, false, due, now, now))
            _load(conn, db, "premiums", ("member_id", "member_name", "plan_id", "coverage_month", "amount_due_cents",
                                         "subsidy", "binder", "due_date", "created_at", "updated_at"), rows)
        elif kind == "payments":
            cur = conn.cursor()
            cur.execute("SELECT id, member_id, plan_id, coverage_month FROM premiums")
            premium_of = {(m, p, str(c)[:7]): i for i, m, p, c in cur}
            lines = list(reader)
            if db == "sqlite":
                first = (cur.execute("SELECT max(id) FROM bank_accounts").fetchone()[0] or 0) + 1
                ids = range(first, first + len(lines))
            else:
                cur.execute("SELECT nextval((SELECT pg_get_serial_sequence('bank_accounts', 'id')::regclass)) "
                            "FROM generate_series(1, %s)", (len(lines),))  # the sequence found once
                ids = [r[0] for r in cur]
            accounts, payments = [], []
            for acct_id, (cid, submitted, channel, member, plan, month, amount, routing, account, kind_, holder) \
                    in zip(ids, lines):
                accounts.append((acct_id, routing, account.encode(), "F" + account, account[-4:], kind_, holder,
                                 "active", "unvalidated", "F", now, now))
                payments.append(("F" + cid, channel, member, plan, month + "-01", premium_of.get((member, plan, month)),
                                 _cents(amount), acct_id, submitted, "TEL" if channel == "phone" else "WEB", "S",
                                 submitted[:10], "pending", 0, now, now))
            if any(p[5] is None for p in payments):
                raise SystemExit("floor in our tables: a payment without its premium (its foreign key unchecked)")
            _load(conn, db, "bank_accounts", ("id", "routing_number", "account_number_enc", "account_hash", "last4",
                                              "account_type", "holder_name", "status", "validation_result",
                                              "key_id", "created_at", "updated_at"), accounts)
            _load(conn, db, "payments", ("confirmation_id", "channel", "member_id", "plan_id", "coverage_month",
                                         "premium_id", "amount_cents", "bank_account_id", "submitted_at", "sec_code",
                                         "payment_type_code", "originate_on", "state", "retry_number", "created_at",
                                         "updated_at"), payments)
            rows = payments
        else:
            raise SystemExit(f"no floor in our tables for {kind}")
    conn.rollback()
    conn.close()
    return len(rows)


def floor_originate(url: str, out_path: str) -> int:
    conn, db = _driver(url)
    cur = conn.cursor()
    cur.execute("SELECT id, routing_number, account_number, account_type, amount, member_id, account_holder "
                "FROM floor_payments WHERE state = 'pending' ORDER BY id")
    n = 0
    with open(out_path, "w", newline="") as f:
        for pid, routing, account, kind, amount, member, holder in cur:
            f.write(f"6{'37' if kind == 'savings' else '27'}{routing}{account:<17}{_cents(amount):010d}"
                    f"{member:<15}{holder[:22]:<22}  0{'01100001'}{pid:07d}\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    cur.execute("UPDATE floor_payments SET state = 'sent' WHERE state = 'pending'")
    conn.commit()
    conn.close()
    return n


def floor_autopay(url: str) -> int:
    conn, _ = _driver(url)
    cur = conn.cursor()
    cur.execute("INSERT INTO floor_pulls (member_id, plan_id, amount_cents, state) "
                "SELECT m.member_id, m.plan_id, 30000, 'pending' FROM floor_mandates m")
    n = cur.rowcount
    conn.commit()
    conn.close()
    return n


def floor_schema_autopay(url: str) -> int:
    """The AutoPay floor's INSERT ... SELECT into the real `payments` (a pull per active mandate, its
    premium joined by member and plan), rolled back. Run after achbatch's pulls, so its
    `autopay_premium_id` is NULL (their unique key taken); the unique index gets its entry all the same."""
    conn, db = _driver(url)
    now, _ = _floor_values(db)
    mark = "?" if db == "sqlite" else "%s"
    _begin_in_our_tables(conn, db)
    cur = conn.cursor()
    cur.execute("INSERT INTO payments (confirmation_id, channel, member_id, plan_id, coverage_month, premium_id, "
                "amount_cents, bank_account_id, submitted_at, sec_code, payment_type_code, originate_on, state, "
                "retry_number, created_at, updated_at) "
                "SELECT 'F-' || m.id, 'autopay', m.member_id, m.plan_id, p.coverage_month, p.id, p.amount_due_cents, "
                f"m.bank_account_id, {mark}, CASE m.channel WHEN 'web' THEN 'WEB' WHEN 'phone' THEN 'TEL' ELSE 'PPD' "
                f"END, 'R', {mark}, 'pending', 0, {mark}, {mark} "
                "FROM autopay_mandates m JOIN premiums p ON p.member_id = m.member_id AND p.plan_id = m.plan_id "
                "WHERE m.status = 'active'", (now, DUE_DRAFT, now, now))
    n = cur.rowcount
    conn.rollback()
    conn.close()
    if n <= 0:
        raise SystemExit("floor in our tables: no AutoPay pull inserted")
    return n


def floor_send(src: str, folder: str) -> int:
    os.makedirs(folder, exist_ok=True)
    dst = os.path.join(folder, os.path.basename(src))
    with open(src, "rb") as i, open(dst, "wb") as o:
        shutil.copyfileobj(i, o, 1 << 20)
        o.flush()
        os.fsync(o.fileno())
    return os.path.getsize(dst)


def _floor_main(args) -> None:
    name = args.floor
    if name == "setup":
        out = floor_setup(args.url)
    elif name.startswith("import-"):
        out = floor_import(args.url, name.split("-", 1)[1], args.path)
    elif name == "schema-autopay":
        out = floor_schema_autopay(args.url)
    elif name.startswith("schema-"):
        out = floor_schema_import(args.url, name.split("-", 1)[1], args.path)
    elif name == "originate":
        out = floor_originate(args.url, args.path)
    elif name == "autopay":
        out = floor_autopay(args.url)
    elif name == "send":
        out = floor_send(args.path, args.folder)
    else:
        sys.exit(f"unknown floor step {name}")
    print(json.dumps({"result": out}))


# ---------------------------------------------------------------------------------------------
# The wrapper: one step's child process, its wall time and its own peak RSS
# ---------------------------------------------------------------------------------------------

def _wrap_main(args) -> None:
    cmd = json.loads(args.wrap)
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
    dt = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": dt, "peak_rss_mb": ru.ru_maxrss / 1024, "cpu": ru.ru_utime + ru.ru_stime, "rc": res.returncode, "stdout": res.stdout[-4000:],
                      "stderr": res.stderr[-4000:]}))


def _achbatch() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "achbatch")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "jobs"]


def _measure(cmd: list[str], env: dict[str, str], ok_codes=(0,)) -> dict:
    wrapper = [sys.executable, os.path.abspath(__file__), "--wrap", json.dumps(cmd)]
    res = subprocess.run(wrapper, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        sys.exit(f"wrapper failed for {cmd}:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    if out["rc"] not in ok_codes:
        sys.exit(f"step {' '.join(cmd)} exited {out['rc']}:\n{out['stdout']}\n{out['stderr']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--payments", type=int, default=100_000)
    ap.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder and the PostgreSQL database (and print them)")
    ap.add_argument("--imports-only", action="store_true",
                    help="only the imports: `import premiums`, `import payments` and `import autopay` (while working "
                         "on the import path)")
    ap.add_argument("--steps", choices=("all", "autopay"), default="all",
                    help="autopay: only the AutoPay steps (the mandates' premiums and mandates imported, timed too)")
    ap.add_argument("--wrap", help=argparse.SUPPRESS)
    ap.add_argument("--floor", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.wrap:
        _wrap_main(args)
        return
    if args.floor:
        _floor_main(args)
        return

    n = args.payments
    tmp = tempfile.mkdtemp(prefix="bench-ledger-")
    data_dir = os.path.join(tmp, "data")
    dbname = None
    if args.db == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
    else:
        from _pgdb import create_database

        url, dbname = create_database()
    env = {k: v for k, v in os.environ.items() if not (k.startswith("ACHBATCH_") and "__" in k)}
    env.pop("ACHBATCH_CONFIG", None)
    env.update({"ACHBATCH_DATABASE__URL": url, "ACHBATCH_PATHS__DATA_DIR": data_dir,
                "ACHBATCH_SECURITY__KEY": KEY_B64})
    me = [sys.executable, os.path.abspath(__file__), "--url", url]
    ach = _achbatch()
    try:
        print(f"bench_ledger: N = {n:,} on {args.db}, python {sys.version.split()[0]}, {os.cpu_count()} cpus; "
              f"achbatch = {' '.join(os.path.basename(c) for c in ach)}")
        paths = generate(tmp, n)
        _measure(ach + ["db", "upgrade"], env)
        _measure(me + ["--floor", "setup"], env)
        rows = []  # (step, achbatch, floor, floor label, floor in our tables or None)

        def step(label, cmd, floor_cmd, floor_label, ok_codes=(0,), schema_cmd=None):
            a = _measure(cmd, env, ok_codes)
            f = _measure(floor_cmd, env) if floor_cmd else None
            sf = _measure(schema_cmd, env) if schema_cmd else None
            rows.append((label, a, f, floor_label, sf))
            tables = (f"; in our tables {sf['seconds']:.2f} s (cpu {sf['cpu']:.2f} s): "
                      f"{a['seconds'] / sf['seconds']:.1f}x of it" if sf else "")
            print(f"  [{label}: {a['seconds']:.2f} s (cpu {a['cpu']:.2f} s), {a['peak_rss_mb']:.0f} MB; floor "
                  f"{f['seconds']:.2f} s (cpu {f['cpu']:.2f} s); {a['seconds'] / f['seconds']:.1f}x{tables}]", flush=True)
            return a

        def load(kind: str, source: str) -> None:  # an import and its floor, then its summary line
            schema = kind in ("premiums", "payments") and source == kind
            a = step(f"import {kind}", ach + ["import", kind, paths[source]],
                     me + ["--floor", f"import-{kind}", "--path", paths[source]], "csv + insert",
                     schema_cmd=me + ["--floor", f"schema-{kind}", "--path", paths[source]] if schema else None)
            print("  " + a["stdout"].strip().splitlines()[0])

        def autopay(schedule: bool = True) -> None:  # the mandates (their premiums first), then the pulls
            if args.steps != "autopay":
                _measure(ach + ["import", "premiums", paths["premiums_autopay"]], env)  # not timed
            load("autopay", "autopay")
            if schedule:
                a = step("autopay schedule", ach + ["autopay", "schedule", "--date", DUE_DRAFT],
                         me + ["--floor", "autopay"], "INSERT ... SELECT", schema_cmd=me + ["--floor", "schema-autopay"])
                print("  " + a["stdout"].strip().splitlines()[0])

        # What every step pays before its first row: start Python, import achbatch (SQLAlchemy, the
        # models, the settings), connect, check the schema, record an import run: a header-only file.
        empty = os.path.join(tmp, "header-only.csv")
        with open(paths["premiums"]) as src, open(empty, "w") as dst:
            dst.write(src.readline())
        start = min((_measure(ach + ["import", "premiums", empty], env) for _ in range(3)), key=lambda m: m["seconds"])
        print(f"  [start-up: `import premiums` of a header-only file {start['seconds']:.2f} s (cpu {start['cpu']:.2f} s),"
              f" {start['peak_rss_mb']:.0f} MB, best of 3]", flush=True)

        if args.steps == "autopay":  # the AutoPay steps alone: the mandates' premiums timed like the others
            load("premiums", "premiums_autopay")
            autopay()
        elif args.imports_only:
            load("premiums", "premiums")
            load("payments", "payments")
            autopay(schedule=False)
        else:
            load("premiums", "premiums")
            load("payments", "payments")
            a = step("originate", ach + ["originate", "--date", ORIGINATE_ON],
                     me + ["--floor", "originate", "--path", os.path.join(tmp, "floor.ach")], "select + f-string + mark")
            print("  " + " / ".join(a["stdout"].strip().splitlines()[:2]))
            outbox = os.path.join(data_dir, "outbox")
            built = sorted(os.path.join(outbox, f) for f in os.listdir(outbox)) if os.path.isdir(outbox) else []
            biggest = os.path.join(tmp, "floor.ach")
            if built:  # `send` moves the built files out of the outbox: the floor copies a copy
                biggest = os.path.join(tmp, "built-copy.ach")
                shutil.copyfile(max(built, key=os.path.getsize), biggest)
            a = step("send", ach + ["send", "--date", ORIGINATE_ON],
                     me + ["--floor", "send", "--path", biggest, "--folder", os.path.join(tmp, "floor-bank")],
                     f"copy + fsync (of {counted(len(built), 'file')} built)")
            print("  " + a["stdout"].strip().splitlines()[0] if a["stdout"].strip() else "  (send: no output)")
            autopay()

        print()
        print(f"  {'step':<17} {'achbatch s':>10} {'peak RSS MB':>11} {'floor s':>8} {'floor RSS':>9} {'ratio':>7}"
              f" {'cpu s':>7} {'floor cpu':>9} {'cpu ratio':>9}  floor")
        for label, a, f, fl, _ in rows:
            ratio = a["seconds"] / f["seconds"] if f and f["seconds"] > 0 else float("nan")
            cratio = a["cpu"] / f["cpu"] if f and f["cpu"] > 0 else float("nan")
            print(f"  {label:<17} {a['seconds']:>10.2f} {a['peak_rss_mb']:>11.1f} {f['seconds']:>8.2f} "
                  f"{f['peak_rss_mb']:>9.1f} {ratio:>6.1f}x {a['cpu']:>7.2f} {f['cpu']:>9.2f} {cratio:>8.1f}x  {fl}")
        print("  ratio: wall time (process start included); cpu: user+system seconds of the step's process (the"
              " database server's own work on PostgreSQL not included); on a busy machine the cpu ratio is steadier")
        schema_rows = [(label, a, f, sf) for label, a, f, _, sf in rows if sf]
        if schema_rows:
            print()
            print(f"  {'the same floor in achbatch tables':<34} {'seconds':>8} {'x floor':>8} {'achbatch x it':>14}")
            for label, a, f, sf in schema_rows:
                print(f"  {label:<34} {sf['seconds']:>8.2f} {sf['seconds'] / f['seconds']:>7.1f}x "
                      f"{a['seconds'] / sf['seconds']:>13.1f}x")
            print("  (imports: plain csv + driver into the real premiums / bank_accounts / payments tables: their"
              " indexes, unique keys, CHECKs and foreign keys, nothing checked, hashed or encrypted; autopay"
              " schedule: the floor's INSERT ... SELECT into the real payments; each rolled back)")
        print(f"  start-up of an achbatch command (an import of a header-only file, best of 3): {start['seconds']:.2f} s")
        print("  targets: import payments <= 6x, import premiums <= 4x, originate <= 4x, each peak RSS < 400 MB")
    finally:
        if args.keep:
            print(f"  kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        if dbname and args.keep:
            print(f"  kept: {url}")
        elif dbname:
            from _pgdb import drop_database

            drop_database(dbname)


if __name__ == "__main__":
    main()
