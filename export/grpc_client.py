"""gRPC client for the cimha model on TF Serving (port 8500), with tensorflow-serving-api.

  python export/grpc_client.py --server=localhost:8500 --features=VIDEO.npz \
      --query="a person opens the door" --duration=30

Needs `pip install tensorflow-serving-api==<your TF version>` (its protos and stubs).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import request_common  # noqa: E402


def build_request(inputs, signature=request_common.SIGNATURE_TEXT, model=request_common.MODEL_NAME):
  """Signature inputs (request_common.batch_inputs) -> a PredictRequest."""
  import tensorflow as tf
  from tensorflow_serving.apis import predict_pb2
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature
  for name, value in inputs.items():
    dtype = tf.string if name == "query" else None
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
  return request


def parse_response(response):
  """PredictResponse -> dict of numpy arrays."""
  import tensorflow as tf
  return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def predict(server, request, timeout=30):
  import grpc
  from tensorflow_serving.apis import prediction_service_pb2_grpc
  with grpc.insecure_channel(server) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
      return parse_response(stub.Predict(request, timeout))
    except grpc.RpcError as e:  # INVALID_ARGUMENT carries the graph's readable message
      raise RuntimeError(f"{server}: {e.code().name}: {e.details()}") from e


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--server", default="localhost:8500")
  p.add_argument("--features", required=True, help=".npy, .npz or HDF5 feature file")
  p.add_argument("--feature_key", default=None)
  p.add_argument("--query", required=True)
  p.add_argument("--duration", type=float, required=True, help="video length in seconds")
  p.add_argument("--max_video_len", type=int, default=128)
  p.add_argument("--top_k", type=int, default=5)
  args = p.parse_args()
  from cimha_tf.data.features import load_feature_file
  features = load_feature_file(args.features, args.feature_key)
  inputs = request_common.batch_inputs([args.query], [features], [args.duration],
                                       args.max_video_len)
  outputs = predict(args.server, build_request(inputs))
  print(json.dumps({"query": args.query, "windows": request_common.windows(outputs, 0, args.top_k)},
                   indent=1))


if __name__ == "__main__":
  main()
