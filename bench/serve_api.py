"""Images per second through `gan-digits serve` (the Open Inference Protocol on KServe's ModelServer) against
`gan-digits generate`'s bulk path, in one run on one model.

- bulk: `gan-digits generate -n N --format npy`, the whole process (start-up included), as bench/serve_speed.py
  measures it.
- batched: requests of --batch images (the server's max_batch_size by default), one after another, over REST
  (tritonclient.http, binary tensors) and gRPC (tritonclient.grpc); and over REST with the tensors in the JSON, as a
  client without the binary extension sends them.
- small: requests of one image each, --concurrency of them at a time, over REST and gRPC.

The paths take turns in --repeats rounds (medians reported), so that a busier moment of a shared machine slows them
alike. The server runs in a process of its own; the clients run here, on the same CPU, as a neighbour would.

    python bench/serve_api.py [--model RUN/generator.onnx]   # needs the server extra and tritonclient[http,grpc]

Without --model it first trains a 200-step run on the test data (the model's quality does not matter here).
Last line: one JSON object with each path's images per second and their ratio to the bulk path's.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from serve_speed import ensure_run  # bench/serve_speed.py, beside this script

REPO = Path(__file__).parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ensure_model(model: Path | None, scratch: Path) -> Path:
    return model if model is not None else ensure_run(None, scratch) / "generator.onnx"


def bulk(model: Path, count: int, scratch: Path) -> float:
    """Images per second of `gan-digits generate --format npy`, the whole process."""
    out = scratch / "bulk.npy"
    began = time.perf_counter()
    subprocess.run(
        [BIN / "gan-digits", "generate", "--model", model, "-n", str(count), "--format", "npy", "--out", out],
        check=True,
        capture_output=True,
    )
    return count / (time.perf_counter() - began)


class Server:
    """`gan-digits serve` on free loopback ports, until stopped with SIGTERM."""

    def __init__(self, model: Path, log: Path) -> None:
        self.http, self.grpc = free_port(), free_port()
        command = [BIN / "gan-digits", "serve", "--model", model, "--http-port", str(self.http)]
        began = time.perf_counter()
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [*map(str, command), "--grpc-port", str(self.grpc)], stdout=self.log, stderr=subprocess.STDOUT
        )
        import tritonclient.http as http

        client = http.InferenceServerClient(f"127.0.0.1:{self.http}")
        while not self._ready(client):
            if self.process.poll() is not None:
                raise SystemExit(f"gan-digits serve exited with {self.process.returncode}: see {log}")
            time.sleep(0.2)
        self.start_s = time.perf_counter() - began
        self.name = model_name(self.http)
        config = client.get_model_config(self.name)
        self.latent_dim = int(config["parameters"]["latent_dim"]["string_value"])
        self.max_batch = int(config["max_batch_size"])
        self.conditional = len(config["input"]) == 2

    @staticmethod
    def _ready(client) -> bool:
        try:
            return client.is_server_ready()
        except Exception:  # not listening yet
            return False

    def stop(self) -> int:
        self.process.terminate()
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


def model_name(port: int) -> str:
    """The one model the server serves: KServe's GET /v2/models lists them (the protocol itself does not)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models") as answer:
        (name,) = json.load(answer)["models"]
    return name


def inputs(module, server: Server, count: int, rng: np.random.Generator, binary: bool = True) -> list:
    z = module.InferInput("z", [count, server.latent_dim], "FP32")
    args = {"binary_data": binary} if module.__name__.endswith("http") else {}
    z.set_data_from_numpy(rng.standard_normal((count, server.latent_dim), dtype=np.float32), **args)
    if not server.conditional:
        return [z]
    label = module.InferInput("label", [count, 1], "INT64")
    label.set_data_from_numpy(rng.integers(0, 10, (count, 1), dtype=np.int64), **args)
    return [z, label]


def batched(server: Server, protocol: str, requests: int, batch: int, binary: bool = True) -> float:
    """Images per second of `requests` requests of `batch` images, one after another."""
    module, url = _client(protocol, server)
    client = module.InferenceServerClient(url)
    rng = np.random.default_rng(0)
    outputs = [module.InferRequestedOutput("image", **({"binary_data": binary} if protocol == "http" else {}))]
    prepared = [inputs(module, server, batch, rng, binary) for _ in range(requests)]
    began = time.perf_counter()
    for request in prepared:
        assert client.infer(server.name, request, outputs=outputs).as_numpy("image").shape[0] == batch
    return requests * batch / (time.perf_counter() - began)


def small(server: Server, protocol: str, requests: int, concurrency: int) -> float:
    """Images per second of `requests` one-image requests, `concurrency` of them under way at a time (a thread and
    a client each: tritonclient's HTTP client is not thread-safe)."""
    module, url = _client(protocol, server)
    rng = np.random.default_rng(1)
    prepared = [inputs(module, server, 1, rng) for _ in range(requests)]
    local = threading.local()

    def send(request: list) -> int:
        if not hasattr(local, "client"):
            local.client = module.InferenceServerClient(url)
        return local.client.infer(server.name, request).as_numpy("image").shape[0]

    with ThreadPoolExecutor(concurrency) as pool:
        began = time.perf_counter()
        assert sum(pool.map(send, prepared)) == requests
        return requests / (time.perf_counter() - began)


def _client(protocol: str, server: Server):
    if protocol == "http":
        import tritonclient.http as module

        return module, f"127.0.0.1:{server.http}"
    import tritonclient.grpc as module

    return module, f"127.0.0.1:{server.grpc}"


PATHS = ("bulk", "http_batched", "grpc_batched", "http_json_batched", "http_small", "grpc_small")


def one_round(server: Server, model: Path, args: argparse.Namespace, batch: int, scratch: Path) -> dict[str, float]:
    """Images per second of every path, once each."""
    return {
        "bulk": bulk(model, args.bulk, scratch),
        "http_batched": batched(server, "http", args.requests, batch),
        "grpc_batched": batched(server, "grpc", args.requests, batch),
        "http_json_batched": batched(server, "http", max(1, args.requests // 4), batch, binary=False),
        "http_small": small(server, "http", args.small, args.concurrency),
        "grpc_small": small(server, "grpc", args.small, args.concurrency),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="A generator.onnx [default: train a short run].")
    parser.add_argument("--repeats", type=int, default=3, help="Rounds of every path, interleaved; medians reported.")
    parser.add_argument("--bulk", type=int, default=30_000, help="Images of the bulk path per round.")
    parser.add_argument("--requests", type=int, default=40, help="Batched requests per protocol and round.")
    parser.add_argument("--batch", type=int, default=None, help="Images per batched request [default: the limit].")
    parser.add_argument("--small", type=int, default=500, help="One-image requests per protocol and round.")
    parser.add_argument("--concurrency", type=int, default=32, help="One-image requests under way at a time.")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="serve-api-"))
    model = ensure_model(args.model, scratch)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

    server = Server(model, scratch / "server.log")
    try:
        batch = args.batch or server.max_batch
        # Interleaved rounds, so that a busier moment of the machine slows every path alike.
        rounds = [one_round(server, model, args, batch, scratch) for _ in range(args.repeats)]
    finally:
        exit_code = server.stop()
    medians = {path: statistics.median(r[path] for r in rounds) for path in PATHS}
    figures = {f"{path}_per_s": round(medians[path]) for path in PATHS}
    figures |= {f"{path}_ratio": round(medians[path] / medians["bulk"], 3) for path in PATHS[1:]}
    figures |= {"batch": batch, "concurrency": args.concurrency, "repeats": args.repeats}
    figures |= {"server_start_s": round(server.start_s, 2), "server_exit_code": exit_code}
    print(
        f"bulk {figures['bulk_per_s']}/s; batches of {batch}: REST {figures['http_batched_per_s']}/s, gRPC "
        f"{figures['grpc_batched_per_s']}/s, REST JSON {figures['http_json_batched_per_s']}/s; one image, "
        f"{args.concurrency} at a time: REST {figures['http_small_per_s']}/s, gRPC {figures['grpc_small_per_s']}/s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
