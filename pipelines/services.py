"""Start or stop the services of a shared sweep on this machine: PostgreSQL and an MLflow server (make services).

    python -m pipelines.services start --runs-dir runs [--host 127.0.0.1] [--advertise NAME] [--auth]
                                       [--pg-port N] [--mlflow-port N] [--mlflow-workers N]
    python -m pipelines.services stop --runs-dir runs
    python -m pipelines.services status --runs-dir runs

`start` writes the workers' settings as `export` lines to <runs-dir>/services/env (mode 600: it holds the
passwords), which `make worker` reads when OPTUNA_STORAGE / MLFLOW_TRACKING_URI are not set; copy that file to
<runs-dir>/services/env on the worker machines (servers bound to --host 0.0.0.0) or export its lines there.
`stop` stops both servers by the PIDs that `start` recorded.
"""
from __future__ import annotations

import sys

from pipelines.cli import ArgumentParser, run
from study.tools import services


def parse(argv):
    parser = ArgumentParser(prog="python -m pipelines.services", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--runs-dir", default="runs", help="the services live in <runs-dir>/services/")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address both servers bind (default 127.0.0.1; 0.0.0.0 for workers on other machines)")
    parser.add_argument("--advertise", default=None, metavar="NAME",
                        help="the host name or address workers use in the URLs (default: this machine's name when "
                             "bound to 0.0.0.0)")
    parser.add_argument("--pg-port", type=int, default=0, help="PostgreSQL's port (default: 5432 if free, else any)")
    parser.add_argument("--mlflow-port", type=int, default=0, help="the MLflow server's port (default: 5000 if free)")
    parser.add_argument("--mlflow-workers", type=int, default=0,
                        help="the MLflow server's processes (default: half the cores, 1 to 4)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--auth", dest="auth", action="store_true", default=None,
                      help="run MLflow's basic-auth app; workers log in with MLFLOW_TRACKING_USERNAME/PASSWORD")
    auth.add_argument("--no-auth", dest="auth", action="store_false")
    args = parser.parse_args(argv)
    if args.mlflow_workers < 0:
        parser.error(f"argument --mlflow-workers: must be a positive integer, got {args.mlflow_workers}")
    for flag in ("pg_port", "mlflow_port"):
        if not 0 <= getattr(args, flag) <= 65535:
            parser.error(f"argument --{flag.replace('_', '-')}: must be a port number, got {getattr(args, flag)}")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    p = services.paths(args.runs_dir)
    if args.action == "stop":
        stopped = services.stop(args.runs_dir)
        print(f"stopped: {', '.join(stopped)}" if stopped else f"nothing was running ({p.root})", file=sys.stderr)
        return 0
    if args.action == "status":
        s = services.status(args.runs_dir)
        for name in ("postgres", "mlflow"):
            print(f"{name}: {'running, pid ' + str(s[name]) if s[name] else 'stopped'}", file=sys.stderr)
        return 0 if s["postgres"] and s["mlflow"] else 1
    try:
        state = services.start(args.runs_dir, args.host, args.pg_port, args.mlflow_port, args.auth,
                                args.mlflow_workers, args.advertise)
    except RuntimeError as e:
        print(f"error: {services.mask_secrets(str(e))}", file=sys.stderr)
        return 1
    print("\n".join([
        f"PostgreSQL    {services.optuna_url(state, masked=True)}   (pid {services.postgres_pid(p)})",
        f"MLflow server {services.tracking_uri(state)}{'  (basic-auth)' if state.get('auth') else ''}   "
        f"(pid {services.mlflow_pid(p)}; artifacts in {p.artifacts})",
        f"workers' settings: {p.env}  (make worker reads it; or: source {p.env})",
        "stop them with: make services-stop",
    ]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main)
