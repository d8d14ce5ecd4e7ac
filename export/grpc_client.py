"""gRPC client for the cimha model on TF Serving (port 8500), with tensorflow-serving-api.

  python export/grpc_client.py --server=localhost:8500 --features=VIDEO.npz \
      --query="a person opens the door" --duration=30
  # or a video, embedded on the client with the served model's recipe (docs/video.md):
  #   --video=my.mp4 --recipe=EXPORT/cimha/1/assets.extra/cimha_export.json [--weights=DIR]

Needs `pip install tensorflow-serving-api==<your TF version>` (its protos and stubs).
"""

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
      hint = (" (is the model server running with its gRPC port published? "
              "export/README.md)") if e.code() == grpc.StatusCode.UNAVAILABLE else ""
      raise RuntimeError(f"{server}: {e.code().name}: {e.details()}{hint}") from e


def main():
  p = request_common.argument_parser(__doc__, "localhost:8500")
  args = p.parse_args()
  inputs = request_common.inputs_from_args(args)
  request_common.print_windows(args, predict(args.server, build_request(inputs)))


if __name__ == "__main__":
  request_common.run_cli(main)
