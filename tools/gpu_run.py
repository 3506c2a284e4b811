"""Everything a GPU session runs, in one prepared script: ``python3 tools/gpu_run.py OUT``.

At most 9 minutes of wall time (``--budget-s``), at most 8 files written into ``OUT``, the
essential first, so that a time-out cuts the least important part:

1. the CUDA tests (``pytest -m cuda tests/test_cuda.py``)         -> junit-cuda.xml
2. every run the book uses, retrained on the GPU, several side by
   side (``reproduce --device cuda --jobs N``), as one archive,     -> runs.tar.gz
   and each judged against the committed one by its recipe's
   seed-to-seed spread                                            -> summary.txt
3. two recipes retrained one after the other, for honest per-run
   wall times                                                     -> summary.txt
4. the benchmark: CPU against GPU at batch 128 and larger, eager
   against bf16, ``torch.compile``, a whole-step CUDA graph       -> bench.txt, bench.json
5. the training and command-line tests with CUDA visible (the
   ordinary suite pins the CPU)                                   -> junit-ordinary.xml

plus ``log.txt`` (every command, its output, its exit status and time). Each step runs in
its own process with a time-out (its share, or what is left of the budget). Only the
standard library and the repository (on ``PYTHONPATH``) are needed: no pip, no nbval.

``--device cpu --dry-run`` runs every step here, on the CPU standing in for the GPU, with
tiny epochs and benchmark sizes (the CUDA tests then skip with their reason).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERIAL_RUNS = ("digits-vae", "digits-L4-beta1-seed0")  # the chapter 10 VAE; a sweep run
MACHINE = """
import platform, torch
print(platform.platform(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
print(torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
"""


class Session:
    """The output folder, the log and the time budget of one GPU session."""

    def __init__(self, out: Path, budget_s: float):
        self.out, self.start, self.budget = out, time.monotonic(), budget_s
        self.log = open(out / "log.txt", "a", buffering=1)
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def say(self, text: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f} s] {text}"
        print(line, flush=True)
        self.log.write(line + "\n")

    def run(
        self, title: str, command: list[str], share_s: float, stdout_to: Path | None = None
    ) -> int | None:
        """Run ``command`` with a time-out of ``share_s`` (or what is left of the budget,
        keeping 15 s for the rest); its output goes to the log (and to ``stdout_to``)."""
        timeout = min(share_s, self.left() - 15)
        if timeout < 5:
            self.say(f"== {title}: SKIPPED, {self.left():.0f} s left of the budget")
            return None
        self.say(f"== {title} (time-out {timeout:.0f} s): {' '.join(command)}")
        t0 = time.monotonic()
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: a time-out ends its workers too
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            rc = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            rc = "TIMEOUT"
        self.log.write(stdout + ("\n-- stderr --\n" + stderr if stderr.strip() else ""))
        if stdout_to is not None:
            with open(stdout_to, "a") as f:
                f.write(stdout)
        self.say(f"== {title}: exit {rc} after {time.monotonic() - t0:.1f} s")
        return None if rc == "TIMEOUT" else rc


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def summary_of_runs(root: Path, device: str) -> str:
    """Each retrained run against the committed one (the recipe's seed-to-seed spread), and
    whether all share one device."""
    sys.path.insert(0, str(ROOT))
    from vaebook.vae import pretrained as P

    lines, devices = [], set()
    for name in P.RUNS:
        if not (root / name / "metrics.json").is_file():
            lines.append(f"{name:30s} MISSING")
            continue
        prov = json.loads((root / name / "provenance.json").read_text())
        devices.add(prov["device"])
        test = json.loads((root / name / "metrics.json").read_text())["test"]
        try:
            rows = P.judge_retrained(name, test)
        except P.PretrainedError as e:
            lines.append(f"{name:30s} not judged: {e}")
            continue
        verdict = "within" if all(r[-1] for r in rows) else "OUTSIDE"
        details = "; ".join(
            f"{k} {new:.3f} vs {old:.3f} (tol {tol:.3f})" for k, old, new, tol, _ in rows
        )
        lines.append(
            f"{name:30s} {verdict} the seed spread: {details}  [{prov['wall_time_s']:.1f} s]"
        )
    lines.append(f"devices of the retrained runs: {sorted(devices)} (asked for {device})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 tools/gpu_run.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("out", type=Path, help="the output folder (at most 8 files are written)")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu standing in (default: cuda)")
    parser.add_argument("--dry-run", action="store_true", help="tiny epochs and benchmark sizes")
    parser.add_argument(
        "--budget-s", type=float, default=540.0, help="wall-time budget (default: 540)"
    )
    parser.add_argument(
        "--jobs", type=int, default=None, help="runs side by side (default: cores - 2, at most 12)"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    s = Session(args.out, args.budget_s)
    dry, device = args.dry_run, args.device
    jobs = args.jobs or (2 if dry else max(1, min(12, (os.cpu_count() or 4) - 2)))
    what = f"device {device}, {'DRY RUN, ' if dry else ''}jobs {jobs}"
    s.say(f"gpu_run: {what}, budget {args.budget_s:.0f} s, python {sys.version.split()[0]}")
    s.run("machine", python("-c", MACHINE), 60)
    if shutil.which("nvidia-smi"):
        s.run("nvidia-smi", ["nvidia-smi"], 30)

    # 1. the CUDA tests
    pytest = python("-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-ra", "-q")
    s.run(
        "CUDA tests",
        [*pytest, "-m", "cuda", "tests/test_cuda.py", f"--junitxml={args.out / 'junit-cuda.xml'}"],
        170,
    )

    # 2. every book run retrained, side by side; archived; judged
    work = Path(tempfile.mkdtemp(prefix="vaebook-gpu-run-"))
    retrained = work / "pretrained"
    epochs = ["--epochs", "2"] if dry else []
    s.run(
        "retrain the book's runs",
        python(
            "-m",
            "vaebook",
            "reproduce",
            "--device",
            device,
            "--jobs",
            str(jobs),
            "--runs-dir",
            str(retrained),
            "--no-progress",
            *epochs,
        ),
        260,
    )
    if retrained.is_dir():
        shutil.make_archive(str(args.out / "runs"), "gztar", root_dir=work, base_dir="pretrained")
        summary = summary_of_runs(retrained, device)
        (args.out / "summary.txt").write_text(
            "retrained runs against the committed ones\n" + summary
        )
        s.say("runs archived in runs.tar.gz; summary.txt:\n" + summary)

    # 3. two recipes one after the other: honest per-run wall times
    serial = work / "serial"
    for name in SERIAL_RUNS:
        t0 = time.monotonic()
        rc = s.run(
            f"serial retrain of {name}",
            python(
                "-m",
                "vaebook",
                "reproduce",
                "--run",
                name,
                "--device",
                device,
                "--runs-dir",
                str(serial),
                "--no-progress",
                *epochs,
            ),
            60,
        )
        if rc == 0:
            prov = json.loads((serial / name / "provenance.json").read_text())
            whole = time.monotonic() - t0
            line = (
                f"serial {name}: training {prov['wall_time_s']:.1f} s on {prov['device_name']}, "
                f"whole reproduce (training, CPU evaluation, writing) {whole:.1f} s\n"
            )
            with open(args.out / "summary.txt", "a") as f:
                f.write(line)
            s.say(line.strip())

    # 4. the benchmark: CPU against GPU, batch 128 and larger, eager/bf16/compile/CUDA graph
    bench = python("tools/bench.py")
    steps = ["--steps", "3", "--rounds", "1"] if dry else ["--steps", "200", "--rounds", "3"]
    ll = ["--ll-k", "20", "--ll-examples", "10", "--ll-loop-examples", "10"] if dry else []
    big = "256" if dry else "1024,8192"
    fast = "plain,vaebook,vaebook-bf16,vaebook-compiled,vaebook-graph"  # the graph: CUDA only
    benchmarks = {  # name: (arguments, share of the budget in seconds)
        "cpu-128-1024": (
            [
                "--device",
                "cpu",
                "--batch-size",
                "128" if dry else "128,1024",
                "--contenders",
                "classic,plain,vaebook",
                "--skip-ll",
            ],
            80,
        ),
        f"{device}-128": (["--device", device, "--batch-size", "128", *ll], 120),
        f"{device}-{big.replace(',', '-')}": (
            ["--device", device, "--batch-size", big, "--contenders", fast, "--skip-ll"],
            90,
        ),
    }
    merged = {}
    for name, (options, share) in benchmarks.items():
        path = work / f"bench-{name}.json"
        s.run(
            f"benchmark {name}",
            [*bench, *options, *steps, "--json", str(path)],
            share,
            stdout_to=args.out / "bench.txt",
        )
        if path.is_file():
            merged[name] = json.loads(path.read_text())
    (args.out / "bench.json").write_text(json.dumps(merged, indent=2) + "\n")

    # 5. the training and CLI tests on a machine with CUDA (conftest.py pins them to the CPU)
    subset = ["-k", "layout or bitwise or bad_inputs"] if dry else []
    s.run(
        "ordinary training and CLI tests, CUDA present",
        [
            *pytest,
            "tests/test_train.py",
            "tests/test_cli.py",
            *subset,
            f"--junitxml={args.out / 'junit-ordinary.xml'}",
        ],
        150,
    )

    shutil.rmtree(work, ignore_errors=True)
    files = sorted(p.name for p in args.out.iterdir())
    took = time.monotonic() - s.start
    s.say(f"done in {took:.0f} s; {len(files)} files in {args.out}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
