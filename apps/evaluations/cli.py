"""The CI gate as a command: start a run for a candidate prompt version, wait, exit by verdict.

Only the standard library, so a pipeline can run it with any Python 3.11 and no install:

    AIFACTORY_API_KEY=… python -m apps.evaluations.cli --url https://factory.example.com \\
        --suite support-answers --prompt support-answer --version 7 --outputs outputs.jsonl

Exit codes: 0 pass, 1 fail, 2 refused (bad input, permission, unknown suite), 3 still running
when the wait ran out, 4 the run failed or was cancelled, 5 the server could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request

EXIT_PASS, EXIT_FAIL, EXIT_REFUSED, EXIT_TIMEOUT, EXIT_RUN_ERROR, EXIT_UNREACHABLE = range(6)


def _request(url: str, key: str, *, method: str = "GET", body: dict | None = None, timeout: float):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Api-Key {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read() or b"{}")
        except json.JSONDecodeError:
            payload = {"detail": exc.reason}
        return exc.code, payload


def read_outputs(path: str) -> list[dict]:
    """The outputs file: JSONL of {"id", "output"} (blank lines ignored)."""
    items = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise SystemExit(f"{path}:{number}: not JSON ({exc.msg})") from None
    return items


def _explain(payload: dict) -> str:
    lines = [str(payload.get("detail", ""))]
    for field, problems in (payload.get("errors") or {}).items():
        for problem in problems if isinstance(problems, list) else [problems]:
            lines.append(f"  {field}: {problem}")
    return "\n".join(line for line in lines if line)


def _report(run: dict, out) -> None:
    progress = run.get("progress") or {}
    print(
        f"run #{run.get('id')} {run.get('status')} verdict={run.get('verdict') or '-'} "
        f"cases {progress.get('done')}/{progress.get('total')}  {run.get('url', '')}",
        file=out,
    )
    for item in run.get("gate") or []:
        print(f"  [{item.get('status')}] {item.get('reason')}", file=out)


def main(argv: list[str] | None = None, *, out=sys.stdout, err=sys.stderr) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("AIFACTORY_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("AIFACTORY_API_KEY", ""))
    parser.add_argument("--suite", required=True)
    parser.add_argument("--prompt")
    subject = parser.add_mutually_exclusive_group()
    subject.add_argument("--version", type=int)
    subject.add_argument("--label")
    parser.add_argument("--model-under-test")
    parser.add_argument("--outputs", help="JSONL file of {id, output} (posted outputs).")
    parser.add_argument(
        "--generate",
        metavar="ENDPOINT",
        help="Generate through this approved endpoint of the model registry (its slug).",
    )
    parser.add_argument("--model", default="", help="A model the endpoint serves.")
    parser.add_argument("--wait", type=int, default=1800, help="Seconds to wait for the verdict.")
    args = parser.parse_args(argv)
    body: dict = {"suite": args.suite}
    if args.prompt:
        body["prompt"] = args.prompt
        if args.version is not None:
            body["version"] = args.version
        if args.label:
            body["label"] = args.label
    if args.model_under_test:
        body["model_under_test"] = args.model_under_test
        body["output_source"] = "model"
    if args.outputs:
        body["outputs"] = read_outputs(args.outputs)
        body["output_source"] = "posted"
    if args.generate:
        body["output_source"] = "generated"
        body["endpoint"] = {"slug": args.generate, "model": args.model}
    base = args.url.rstrip("/") + "/api/v1/evaluations/runs/"
    deadline = time.monotonic() + args.wait
    try:
        status, run = _request(
            base, args.api_key, method="POST", body={**body, "wait": 0}, timeout=120
        )
        if status not in (200, 201, 202):
            print(f"refused ({status}): {_explain(run)}", file=err)
            return EXIT_REFUSED
        while True:
            remaining = int(deadline - time.monotonic())
            wait = max(0, min(60, remaining))
            status, run = _request(
                f"{base}{run['id']}/verdict/?wait={wait}", args.api_key, timeout=wait + 30
            )
            if status in (200, 422, 409) or remaining <= 0:
                break
            if status != 202:
                print(f"refused ({status}): {_explain(run)}", file=err)
                return EXIT_REFUSED
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        print(f"cannot reach {args.url}: {exc}", file=err)
        return EXIT_UNREACHABLE
    _report(run, out)
    if status == 200:
        return EXIT_PASS
    if status == 422:
        return EXIT_FAIL
    if status == 409:
        print(f"the run stopped: {run.get('error') or run.get('status')}", file=err)
        return EXIT_RUN_ERROR
    print(f"no verdict after {args.wait} s; follow {run.get('url')}", file=err)
    return EXIT_TIMEOUT


if __name__ == "__main__":
    sys.exit(main())
