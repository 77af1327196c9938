"""Cell claims held by the storage engine's own locks (study.sweep.tuning.claims), against a real journal directory and
a real PostgreSQL: two workers racing for the same cell a hundred times, exactly one wins each time; a claim dies
with its holder and only then; a claim lost with its database connection is taken back only if nobody else held
the cell meanwhile."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from services_support import claim_is_free
from study.sweep import tuning

ROUNDS = 100
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _racer(url: str, barrier, results, rounds: int) -> None:
    """One worker: each round, try the same cell's claim at the moment the other does, report, let go."""
    locks = tuning.cell_locks(url, 60.0)
    try:
        for r in range(rounds):
            claim = tuning.Claim(locks, f"race/cell-{r % 7}", f"racer-{os.getpid()}", 60.0)
            barrier.wait(timeout=60)
            won = claim.acquire()
            results.put((r, os.getpid(), won))
            barrier.wait(timeout=60)  # both have tried: only now may the winner let go
            claim.release()
    finally:
        locks.close()


def race(url: str, rounds: int = ROUNDS) -> dict[int, list[bool]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(url, barrier, results, rounds)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes: dict[int, list[bool]] = {}
    for _ in range(2 * rounds):
        r, _, won = results.get(timeout=120)
        outcomes.setdefault(r, []).append(won)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0, p.exitcode
    return outcomes


@pytest.fixture(scope="module")
def pg_url(request):
    from services_support import shared_services
    from study.tools.services import optuna_url

    return optuna_url(shared_services(request).state)


def test_two_workers_racing_for_a_cell_on_a_journal_exactly_one_wins_each_time(tmp_path):
    outcomes = race(str(tmp_path / "optuna" / "race.journal"))
    assert sorted(outcomes) == list(range(ROUNDS))
    assert all(sorted(won) == [False, True] for won in outcomes.values()), \
        {r: w for r, w in outcomes.items() if sorted(w) != [False, True]}


def test_a_claim_is_ours_while_the_cells_record_names_it(tmp_path):
    """Once a claim is written into its cell's ledger (``own``), it vouches for itself by that record: a worker
    that held the cell in between (a lost connection's window) shows there, read back from the storage."""
    import optuna

    url = str(tmp_path / "optuna" / "own.journal")
    storage = tuning.open_storage(url)
    claim = tuning.Claim(tuning.cell_locks(url, 8.0), "own/cell", "w", 8.0)
    assert claim.acquire() and claim.still_ours(), "nothing to compare before the ledger names it"
    book = tuning.ledger.Ledger(optuna.create_study(storage=storage, study_name="own/cell"))
    claim.own(book, recovered_trials=2)
    assert claim.still_ours() and (book.record.owner, book.record.recovered_trials) == (claim.token, 2)
    other = tuning.ledger.Ledger(optuna.load_study(storage=tuning.open_storage(url), study_name="own/cell"))
    other.update(owner="thief:1:abc")
    assert not claim.still_ours()
    claim.release()


@pytest.mark.slow
def test_two_workers_racing_for_a_cell_on_postgresql_exactly_one_wins_each_time(pg_url):
    outcomes = race(pg_url)
    assert sorted(outcomes) == list(range(ROUNDS))
    assert all(sorted(won) == [False, True] for won in outcomes.values()), \
        {r: w for r, w in outcomes.items() if sorted(w) != [False, True]}


HOLDER = """
import sys, time
from study.sweep import tuning
locks = tuning.cell_locks(sys.argv[1], 60.0)
claim = tuning.Claim(locks, "held/cell", "holder", 60.0)
assert claim.acquire()
print("held", flush=True)
time.sleep(600)
"""


def holder(url: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert proc.stdout.readline().strip() == "held"
    return proc


def is_free(url: str, name: str = "held/cell") -> bool:
    return claim_is_free(url, name)


def claim_dies_with_its_holder(url: str) -> float:
    """Held while the holder lives (stopped, even); free once it is killed. Returns how long freeing took."""
    proc = holder(url)
    try:
        assert not is_free(url)
        os.kill(proc.pid, signal.SIGSTOP)  # a frozen worker still holds its cell
        assert not is_free(url)
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=30)
        while not is_free(url):
            assert time.monotonic() - killed < 10, "the claim outlived its holder"
            time.sleep(0.02)
        return time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_journal_claim_is_held_while_its_holder_lives_and_freed_when_it_is_killed(tmp_path):
    seconds = claim_dies_with_its_holder(str(tmp_path / "optuna" / "held.journal"))
    print(f"journal claim freed {seconds:.3f} s after SIGKILL")


@pytest.mark.slow
def test_a_postgresql_claim_is_held_while_its_holder_lives_and_freed_when_it_is_killed(pg_url):
    seconds = claim_dies_with_its_holder(pg_url)
    print(f"PostgreSQL claim freed {seconds:.3f} s after SIGKILL")


@pytest.mark.slow
def test_a_claim_lost_with_its_connection_is_taken_back_only_if_nobody_held_the_cell(pg_url):
    """The lock goes with its connection (as in a database restart). The holder takes it back when it can and
    its cell's record still names it; if another worker claimed the cell meanwhile, ClaimLost."""
    import sqlalchemy

    def kill_backends_of(locks):
        pid = locks.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        admin = sqlalchemy.create_engine(pg_url, poolclass=sqlalchemy.pool.NullPool)
        with admin.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})").scalar()
        admin.dispose()

    locks = tuning.cell_locks(pg_url, 8.0)
    claim = tuning.Claim(locks, "lost/cell-a", "w", 8.0)
    assert claim.acquire()
    kill_backends_of(locks)
    claim.check(force=True)  # nobody took it: regained on a new connection
    assert not is_free(pg_url, "lost/cell-a")

    kill_backends_of(locks)
    other = tuning.cell_locks(pg_url, 8.0)
    thief = tuning.Claim(other, "lost/cell-a", "thief", 8.0)
    assert thief.acquire()  # the cell was free while its holder's connection was gone
    with pytest.raises(tuning.ClaimLost):
        claim.check(force=True)
    thief.release()

    import optuna

    claim = tuning.Claim(locks, "lost/cell-b", "w", 8.0)
    assert claim.acquire()
    book = tuning.ledger.Ledger(optuna.create_study(study_name="lost/cell-b"))  # the cell's record
    claim.own(book)
    assert claim.still_ours() and book.record.owner == claim.token
    book.update(owner="thief:1:abc")  # the record names someone else: another worker held the cell in between
    assert not claim.still_ours()
    kill_backends_of(locks)
    with pytest.raises(tuning.ClaimLost):
        claim.check(force=True)
    assert is_free(pg_url, "lost/cell-b"), "a lost claim must let go of the lock it took back"
    locks.close()
    other.close()


# --- a host that vanishes ----------------------------------------------------------------------------------------
NETNS, VETH_HOST, VETH_PEER = "optstudy-hostb", "osv-host", "osv-peer"
HOST_IP, PEER_IP = "10.231.0.1", "10.231.0.2"


def _ip(*args, netns: str | None = None) -> None:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    subprocess.run([*prefix, "ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def other_host():
    """A second "machine" on this one: a network namespace joined to ours by a veth pair (root and iproute2, which
    `make test` installs; never skipped in CI)."""
    import shutil

    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("network namespaces need root and iproute2 in CI (tests/system_deps.sh installs iproute2)")
        pytest.skip("network namespaces need root and iproute2")
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
    subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True)
    try:
        _ip("netns", "add", NETNS)
        _ip("link", "add", VETH_HOST, "type", "veth", "peer", "name", VETH_PEER)
        _ip("link", "set", VETH_PEER, "netns", NETNS)
        _ip("addr", "add", f"{HOST_IP}/24", "dev", VETH_HOST)
        _ip("link", "set", VETH_HOST, "up")
        _ip("addr", "add", f"{PEER_IP}/24", "dev", VETH_PEER, netns=NETNS)
        _ip("link", "set", VETH_PEER, "up", netns=NETNS)
        _ip("link", "set", "lo", "up", netns=NETNS)
        yield NETNS
    finally:
        subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)
        subprocess.run(["ip", "link", "del", VETH_HOST], capture_output=True)


@pytest.mark.slow
def test_a_claim_held_from_a_host_that_vanishes_is_released_within_the_lease(other_host):
    """A worker on another machine holds a cell; then that machine drops off the network without a word (its link
    goes down: no FIN, no RST, no answer to anything). The database ends the silent session once its TCP
    keepalives go unanswered (set from lease_seconds), and the cell can be claimed again within the lease."""
    from services_support import ensure_system_deps
    from study.tools import services

    import shutil
    import tempfile

    ensure_system_deps()
    lease = 6.0
    base = tempfile.mkdtemp(prefix="optstudy-vanish-")  # the postgres user must reach it (pytest's are mode 700)
    os.chmod(base, 0o711)
    runs_dir = os.path.join(base, "runs")
    proc = None
    try:
        # PostgreSQL alone, reachable from the other "machine": a claim needs nothing else (no MLflow server)
        state = services.new_state("0.0.0.0", services.free_port(), 0, auth=False)
        services.start_postgres(services.paths(runs_dir), state)
        services.ensure_databases(state)
        local = services.optuna_url(state, local=True)
        remote = local.replace("@127.0.0.1:", f"@{HOST_IP}:")
        holder_code = HOLDER.replace("60.0", str(lease))
        proc = subprocess.Popen(["ip", "netns", "exec", other_host, sys.executable, "-c", holder_code, remote],
                                cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": REPO})
        assert proc.stdout.readline().strip() == "held"
        time.sleep(lease)  # alive and quiet for a whole lease: still its cell
        assert not is_free(local)
        _ip("link", "set", VETH_PEER, "down", netns=other_host)  # the machine vanishes
        vanished = time.monotonic()
        while not is_free(local):
            assert time.monotonic() - vanished < lease, "a vanished host kept its claim beyond the lease"
            time.sleep(0.2)
        released = time.monotonic() - vanished
        assert proc.poll() is None, "the holder was meant to live on, cut off"
        print(f"claim of a vanished host released {released:.1f} s after its link went down (lease {lease:.0f} s)")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        services.stop(runs_dir)
        shutil.rmtree(base, ignore_errors=True)
