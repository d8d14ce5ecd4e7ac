"""REST client for the cimha model on TF Serving (port 8501).

  python export/rest_client.py --server=localhost:8501 --features=VIDEO.npz \
      --query="a person opens the door" --duration=30 [--format=instances|inputs]

Payloads (https://www.tensorflow.org/tfx/serving/api_rest):
  row format     {"signature_name": ..., "instances": [{"query": ..., "video_features":
                  [[...], ...], "video_length": n, "duration": s}, ...]}
  columnar       {"signature_name": ..., "inputs": {"query": [...], "video_features": ...}}
The response holds "predictions" (row) or "outputs" (columnar), with start_seconds,
end_seconds and scores per query, best first.
"""

import argparse
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


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--server", default="localhost:8501")
  p.add_argument("--features", required=True, help=".npy, .npz or HDF5 feature file")
  p.add_argument("--feature_key", default=None)
  p.add_argument("--query", required=True)
  p.add_argument("--duration", type=float, required=True, help="video length in seconds")
  p.add_argument("--max_video_len", type=int, default=128)
  p.add_argument("--format", choices=["instances", "inputs"], default="instances")
  p.add_argument("--top_k", type=int, default=5)
  args = p.parse_args()
  from cimha_tf.data.features import load_feature_file
  features = load_feature_file(args.features, args.feature_key)
  inputs = request_common.batch_inputs([args.query], [features], [args.duration],
                                       args.max_video_len)
  outputs = predict(args.server, build_payload(inputs, fmt=args.format))
  print(json.dumps({"query": args.query, "windows": request_common.windows(outputs, 0, args.top_k)},
                   indent=1))


if __name__ == "__main__":
  main()
