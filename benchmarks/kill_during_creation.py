"""`kill -9` of `nasopt run` while it creates its study, then a rerun: how many reruns succeed.

Each try starts `nasopt run study.toml` on a fresh SQLite file in the current folder (a study
written by tests/services.py:write_tiny_study), kills it (-9) as soon as the study's row exists,
before its fingerprint is written, and reruns the same command (NASOPT_CREATION_WAIT_S=1).

    python benchmarks/kill_during_creation.py TRIES      # in a folder holding study.toml
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna


def main(tries: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NASOPT_")}
    env["NASOPT_CREATION_WAIT_S"] = "1"
    run = [sys.executable, "-m", "nasopt", "run", "study.toml", "--no-progress", "--storage"]
    ok = half = 0
    for i in range(tries):
        db = f"kill{i}.db"
        if os.path.exists(db):
            os.remove(db)
        url = f"sqlite:///{db}"
        proc = subprocess.Popen([*run, url], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            try:
                with sqlite3.connect(db, timeout=0.1) as conn:
                    if conn.execute("select count(*) from studies").fetchone()[0]:
                        break
            except sqlite3.Error:
                pass
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        names = [s.study_name for s in optuna.get_all_study_summaries(url)] if os.path.exists(db) else []
        attrs = optuna.load_study(study_name=names[0], storage=url).user_attrs if names else {}
        half += bool(names) and "nasopt:fingerprint" not in attrs
        rerun = subprocess.run([*run, url], env=env, capture_output=True, text=True)
        complete = 0
        if rerun.returncode == 0:
            study = optuna.load_study(study_name="tiny", storage=url)
            complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
        ok += rerun.returncode == 0 and complete > 0
        print(f"try {i}: rerun exit {rerun.returncode}, {complete} trials", flush=True)
    print(f"{ok}/{tries} reruns succeeded; {half} kills left a study without fingerprint")


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    main(int(sys.argv[1]))
