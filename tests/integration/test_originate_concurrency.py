"""Issue 13: two `originate` at once on one database from one folder. The first holds the
origination lock from the repair of leftovers to its last rename; the second exits 3 at once,
saying who holds it, and changes nothing (before: it waited, then removed the first one's temporary
files as leftovers of "a previous run", and the first died with FileNotFoundError)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import select

from batch.store.models import NachaFile, Payment
from test_delivery import achbatch, cli_env  # noqa: F401 - fixture
from test_origination import FILE_DATE, seed

ROOT = Path(__file__).resolve().parents[2]

# The first originate, paused after its commit and before its renames (its files still temporary).
FIRST = textwrap.dedent("""
    import os, sys, time
    from datetime import datetime
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from batch.collect.origination import originate
    from batch.run import wiring
    from batch.store.crypto import load_keyring
    from batch.store.db import open_database
    from jobs.settings import load_settings
    from datetime import date
    config, paused, go = sys.argv[1:4]
    st = load_settings(config, environ={{}})
    keyring = load_keyring(None, st.security.key_file, st.default_key_file).keyring
    def on_step(name):
        if name == "committed":
            Path(paused).write_text(str(os.getpid()))
            while not Path(go).exists():
                time.sleep(0.01)
    with open_database(st.database_url) as sessions:
        r = originate(sessions, keyring, wiring.company(st), wiring.limits(st), date(2026, 12, 1), st.outbox_dir,
                      file_time="2300", on_step=on_step, guard=wiring.guard(st))
    print("built", ",".join(f.file_name for f in r.files))
""")


def test_a_second_originate_exits_3_naming_the_holder_and_the_first_finishes(cli_env, sessions, tmp_path):
    keyring, config = cli_env
    cfg = config({"transport": "folder"})
    seed(sessions, keyring, 12)
    paused, go = tmp_path / "paused", tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACHBATCH_")}
    first = subprocess.Popen([sys.executable, "-c", FIRST.format(root=str(ROOT)), str(cfg), str(paused), str(go)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not paused.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first originate did not reach its commit"
            time.sleep(0.01)
        outbox = tmp_path / "data" / "outbox"
        temporary = sorted(p.name for p in outbox.iterdir())
        assert temporary and all(n.startswith(".") for n in temporary), temporary  # not renamed yet
        second = achbatch(cfg, "originate", "--date", str(FILE_DATE))
        assert second.returncode == 3, (second.stdout, second.stderr)
        assert "another origination holds the origination lock since" in second.stderr
        assert f"pid {first.pid}" in second.stderr and "nothing changed" in second.stderr
        assert sorted(p.name for p in outbox.iterdir()) == temporary  # the first one's files untouched
    finally:
        go.write_text("go")
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert "FileNotFoundError" not in err and out.startswith("built ACH-20261201-A.ach")
    assert sorted(p.name for p in outbox.iterdir()) == ["ACH-20261201-A.ach"]
    with sessions() as s:
        assert [r.file_name for r in s.scalars(select(NachaFile))] == ["ACH-20261201-A.ach"]
        assert set(s.scalars(select(Payment.state))) == {"in_file"}
    # Once the first is done, the lock is free: a later originate finds nothing new to build.
    again = achbatch(cfg, "originate", "--date", str(FILE_DATE))
    assert again.returncode == 0, again.stderr
