"""REST client for the cimha model on TF Serving (port 8501).

  python export/rest_client.py --server=localhost:8501 --features=VIDEO.npz \
      --query="a person opens the door" --duration=30
  # or a video, embedded on the client with the served model's recipe (docs/video.md):
  #   --video=my.mp4 --recipe=EXPORT/cimha/1/assets.extra/cimha_export.json [--weights=DIR] [--format=instances|inputs]

Payloads (https://www.tensorflow.org/tfx/serving/api_rest):
  row format     {"signature_name": ..., "instances": [{"query": ..., "video_features":
                  [[...], ...], "video_length": n, "duration": s}, ...]}
  columnar       {"signature_name": ..., "inputs": {"query": [...], "video_features": ...}}
The response holds "predictions" (row) or "outputs" (columnar), with start_seconds,
end_seconds and scores per query, best first.
"""

import json
import os
import sys
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import request_common  # noqa: E402


def build_payload(inputs, signature=request_common.SIGNATURE_TEXT, fmt="instances"):
  """Signature inputs (request_common.batch_inputs) -> the JSON-able request body."""
  lists = {k: np.asarray(v).tolist() for k, v in inputs.items()}
  if fmt == "inputs":
    return {"signature_name": signature, "inputs": lists}
  if fmt != "instances":
    raise ValueError(f"format {fmt!r}: expected 'instances' or 'inputs'")
  batch = len(lists["duration"])
  return {"signature_name": signature,
          "instances": [{k: v[b] for k, v in lists.items()} for b in range(batch)]}


def parse_response(body):
  """Response JSON -> dict of numpy arrays with a batch axis, whatever the format."""
  if "error" in body:
    raise RuntimeError(f"TF Serving error: {body['error']}")
  if "outputs" in body:
    return {k: np.asarray(v) for k, v in body["outputs"].items()}
  rows = body["predictions"]
  return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


def predict(server, payload, model=request_common.MODEL_NAME, timeout=30):
  url = f"http://{server}/v1/models/{model}:predict"
  req = urllib.request.Request(url, data=json.dumps(payload).encode(),
                               headers={"Content-Type": "application/json"})
  try:
    with urllib.request.urlopen(req, timeout=timeout) as resp:
      return parse_response(json.load(resp))
  except urllib.error.HTTPError as e:  # INVALID_ARGUMENT comes back as HTTP 400 + message
    raise RuntimeError(f"{url}: HTTP {e.code}: {e.read().decode(errors='replace')}") from e
  except OSError as e:  # URLError (refused, unknown host) is one; so is a socket timeout
    reason = getattr(e, "reason", e)
    raise RuntimeError(f"{url}: cannot reach TF Serving ({reason}); is the model server "
                       "running with its REST port published (export/README.md)?") from e


def main():
  p = request_common.argument_parser(__doc__, "localhost:8501")
  p.add_argument("--format", choices=["instances", "inputs"], default="instances")
  args = p.parse_args()
  inputs = request_common.inputs_from_args(args)
  request_common.print_windows(args, predict(args.server, build_payload(inputs, fmt=args.format)))


if __name__ == "__main__":
  request_common.run_cli(main)
