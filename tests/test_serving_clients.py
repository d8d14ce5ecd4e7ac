"""The REST and gRPC clients' exact payloads, decoded as TF Serving decodes them and run
through the locally loaded SavedModel signature, agree with the Keras model; and both
command lines, run as export/README.md runs them, against local stand-in servers."""

import contextlib
import importlib.util
import json
import os
import socket

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import MAX_VIDEO_LEN, REPO, VIDEO_DIM, deploy_setup


def _load(name):
  path = os.path.join(REPO, "export", f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"cimha_export_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope="module")
def setup():
  return deploy_setup()


@pytest.fixture(scope="module")
def loaded(setup):
  from cimha_tf.deploy import saved_model
  return saved_model.load(setup["saved_model"])[0]


@pytest.fixture(scope="module")
def batch(setup):
  """Three test queries with their videos cut to their real length (different N)."""
  x = setup["inputs"]
  rows = [0, 1, int(np.argmin(x["video_mask"].sum(1)))]
  feats = [x["video_features"][b, :int(x["video_mask"][b].sum())] for b in rows]
  common = _load("request_common")
  text = common.batch_inputs([setup["queries"][b] for b in rows], feats,
                             [float(setup["duration"][b]) for b in rows], MAX_VIDEO_LEN)
  words = [[int(t) for t in x["query_tokens"][b] if t] for b in rows]
  tokens = common.batch_inputs(words, feats, [float(setup["duration"][b]) for b in rows],
                               MAX_VIDEO_LEN)
  ref = setup["model"]({k: v[rows] for k, v in x.items()}, training=False)
  return rows, text, tokens, {k: v.numpy() for k, v in ref.items()}


def _check(outputs, ref, text_inputs, setup, rows):
  n = text_inputs["video_features"].shape[1]
  for name in ("start_probs", "end_probs", "inside_probs"):
    np.testing.assert_allclose(np.asarray(outputs[name]), ref[name][:, :n], atol=1e-5)
  common = _load("request_common")
  for i, b in enumerate(rows):
    w = common.windows(outputs, i)
    assert w and all(0 <= s < e <= setup["duration"][b] + 1e-4 for s, e, _ in w)


def _rest_decode(payload):
  """TF Serving's REST decoding: row format stacks the instances, columnar is direct."""
  body = json.loads(json.dumps(payload))  # exactly what goes over the wire
  if "instances" in body:
    cols = {k: [inst[k] for inst in body["instances"]] for k in body["instances"][0]}
  else:
    cols = body["inputs"]
  dtypes = {"query": tf.string, "video_features": tf.float32, "video_length": tf.int32,
            "duration": tf.float32, "query_tokens": tf.int32}
  return body["signature_name"], {k: tf.constant(v, dtypes[k]) for k, v in cols.items()}


@pytest.mark.parametrize("fmt", ["instances", "inputs"])
@pytest.mark.parametrize("kind", ["text", "tokens"])
def test_rest_payload_runs_on_the_signature(setup, loaded, batch, fmt, kind):
  rest = _load("rest_client")
  rows, text, tokens, ref = batch
  inputs = text if kind == "text" else tokens
  signature = "serving_default" if kind == "text" else "serving_tokens"
  payload = rest.build_payload(inputs, signature, fmt)
  assert (fmt in payload) and payload["signature_name"] == signature
  name, tensors = _rest_decode(payload)
  out = {k: v.numpy() for k, v in loaded.signatures[name](**tensors).items()}
  # Serialised back the way the server answers, parsed by the client.
  if fmt == "inputs":
    body = {"outputs": {k: v.tolist() for k, v in out.items() if v.dtype != object}}
  else:
    body = {"predictions": [{k: v[b].tolist() for k, v in out.items() if v.dtype != object}
                            for b in range(len(rows))]}
  _check(rest.parse_response(json.loads(json.dumps(body))), ref, text, setup, rows)


@pytest.mark.parametrize("kind", ["text", "tokens"])
def test_grpc_request_runs_on_the_signature(setup, loaded, batch, kind):
  from tensorflow_serving.apis import predict_pb2
  grpc_client = _load("grpc_client")
  rows, text, tokens, ref = batch
  signature = "serving_default" if kind == "text" else "serving_tokens"
  request = grpc_client.build_request(text if kind == "text" else tokens, signature)
  wire = predict_pb2.PredictRequest.FromString(request.SerializeToString())
  assert wire.model_spec.name == "cimha" and wire.model_spec.signature_name == signature
  tensors = {k: tf.constant(tf.make_ndarray(v)) for k, v in wire.inputs.items()}
  out = loaded.signatures[wire.model_spec.signature_name](**tensors)
  response = predict_pb2.PredictResponse()
  for k, v in out.items():
    response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
  parsed = grpc_client.parse_response(predict_pb2.PredictResponse.FromString(
      response.SerializeToString()))
  _check(parsed, ref, text, setup, rows)


def test_rest_error_body_and_bad_batch_are_clear(setup):
  rest = _load("rest_client")
  common = _load("request_common")
  with pytest.raises(RuntimeError, match="INVALID_ARGUMENT"):
    rest.parse_response({"error": "INVALID_ARGUMENT: video_length: must be <= N"})
  with pytest.raises(ValueError, match="as many queries"):
    common.batch_inputs(["a"], [], [1.0], MAX_VIDEO_LEN)
  with pytest.raises(ValueError, match="'rows'"):
    rest.build_payload(common.batch_inputs(["a"], [np.ones((2, 3))], [1.0], 8), fmt="rows")


def test_model_config_and_readme_commands():
  """models.config parses as TF Serving's own ModelServerConfig (text format), and its
  base_path is where the README's docker command mounts the export's model folder."""
  from google.protobuf import text_format
  from tensorflow_serving.config import model_server_config_pb2
  from cimha_tf.deploy import saved_model
  with open(os.path.join(REPO, "export", "models.config")) as f:
    config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
  (model,) = config.model_config_list.config
  assert model.name == saved_model.MODEL_NAME and model.model_platform == "tensorflow"
  assert model.base_path == f"/models/{saved_model.MODEL_NAME}"  # EXPORT/cimha, EXPORT at /models
  assert model.model_version_policy.latest.num_versions == 1
  with open(os.path.join(REPO, "export", "README.md")) as f:
    readme = f.read()
  for needle in ("docker run", "tensorflow/serving", "8501", "8500",
                 '-v "$PWD/EXPORT:/models"', "--model_config_file=/models/models.config",
                 '-v "$PWD/EXPORT/cimha:/models/cimha" -e MODEL_NAME=cimha'):
    assert needle in readme


def _stand_in_rest_server(loaded):
  """A local stand-in for TF Serving's REST API: decodes as it does, runs the loaded
  SavedModel's signature, answers in the request's format (or an INVALID_ARGUMENT body)."""
  import http.server
  import threading

  class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
      payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
      try:
        name, tensors = _rest_decode(payload)
        out = {k: v.numpy() for k, v in loaded.signatures[name](**tensors).items()}
        keep = {k: v for k, v in out.items() if v.dtype != object}
        if "inputs" in payload:
          body, code = {"outputs": {k: v.tolist() for k, v in keep.items()}}, 200
        else:
          body, code = {"predictions": [{k: v[b].tolist() for k, v in keep.items()}
                                        for b in range(len(payload["instances"]))]}, 200
      except tf.errors.InvalidArgumentError as e:
        body, code = {"error": f"INVALID_ARGUMENT: {e.message}"}, 400
      data = json.dumps(body).encode()
      self.send_response(code)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def log_message(self, *args):
      pass

  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  return server


def _client_cli(name, *args):
  """The client as its README runs it, from the repository root, without PYTHONPATH."""
  import subprocess
  import sys
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "2"
  return subprocess.run([sys.executable, os.path.join("export", f"{name}.py"), *args],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _one_query_file(setup, loaded, b, path, top_k):
  """Test query b's video saved at path (cut to its length) -> (features, query, duration,
  the top_k windows of the signature called in process)."""
  feats = setup["inputs"]["video_features"][b, :int(setup["inputs"]["video_mask"][b].sum())]
  np.save(path, feats)
  query, duration = setup["queries"][b], float(setup["duration"][b])
  common = _load("request_common")
  inputs = common.batch_inputs([query], [feats], [duration], MAX_VIDEO_LEN)
  out = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
  return feats, query, duration, common.windows({k: v.numpy() for k, v in out.items()}, 0, top_k)


def test_rest_client_command_line_against_a_stand_in_server(setup, loaded, tmp_path):
  """The whole command line over HTTP: feature file -> request -> server -> windows, equal
  to the windows of the same signature called in process; then the clear errors."""
  feats, query, duration, want = _one_query_file(setup, loaded, 0, tmp_path / "v.npy", 3)
  server = _stand_in_rest_server(loaded)
  try:
    address = f"127.0.0.1:{server.server_address[1]}"
    for fmt in ("instances", "inputs"):
      r = _client_cli("rest_client", f"--server={address}", f"--features={tmp_path / 'v.npy'}",
                      f"--query={query}", f"--duration={duration}", "--top_k=3",
                      f"--max_video_len={MAX_VIDEO_LEN}", f"--format={fmt}")
      assert r.returncode == 0, r.stderr[-3000:]
      got = json.loads(r.stdout)
      assert got["query"] == query
      np.testing.assert_allclose(got["windows"], want, rtol=1e-5)
    np.save(tmp_path / "narrow.npy", feats[:, :3])  # the server's graph refuses it
    r = _client_cli("rest_client", f"--server={address}", f"--features={tmp_path / 'narrow.npy'}",
                    "--query=a door", "--duration=9")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: http://") and "HTTP 400" in r.stderr
    assert "INVALID_ARGUMENT" in r.stderr
    # A video longer than the model's max_video_len, pooled to the client's default 128:
    # the error says which --max_video_len to pass.
    np.save(tmp_path / "long.npy", np.resize(feats, (MAX_VIDEO_LEN + 8, feats.shape[1])))
    r = _client_cli("rest_client", f"--server={address}", f"--features={tmp_path / 'long.npy'}",
                    "--query=a door", "--duration=9")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith(
        f"-- pass --max_video_len={MAX_VIDEO_LEN}, the served model's: the client mean-pools "
        "longer videos to --max_video_len steps (default 128)"), r.stderr[-2000:]
  finally:
    server.shutdown()
    server.server_close()  # else the port still accepts, and the client waits its timeout
  with _port_nothing_listens_on() as port:  # the server is gone
    r = _client_cli("rest_client", f"--server=127.0.0.1:{port}", f"--features={tmp_path / 'v.npy'}",
                    "--query=a door", "--duration=9")
  assert r.returncode == 1 and "Traceback" not in r.stderr
  assert "cannot reach TF Serving" in r.stderr and "export/README.md" in r.stderr
  r = _client_cli("rest_client", f"--server={address}", f"--features={tmp_path / 'none.npy'}",
                  "--query=a door", "--duration=9")
  assert r.returncode == 1 and r.stderr.strip() == f"error: feature file {tmp_path / 'none.npy'} not found"


@contextlib.contextmanager
def _port_nothing_listens_on():
  """A local port held bound but not listening, so connecting is refused and no other
  process can take it meanwhile (a stopped server's freed port could be reused)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]


def test_grpc_client_command_line_against_a_stand_in_server(setup, loaded, tmp_path):
  """The gRPC command line against a local PredictionService that runs the signature."""
  import concurrent.futures
  import grpc
  from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

  class Service(prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request, context):
      tensors = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
      try:
        out = loaded.signatures[request.model_spec.signature_name](**tensors)
      except tf.errors.InvalidArgumentError as e:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, e.message)
      response = predict_pb2.PredictResponse()
      for k, v in out.items():
        response.outputs[k].CopyFrom(tf.make_tensor_proto(v.numpy()))
      return response

  feats, query, duration, want = _one_query_file(setup, loaded, 1, tmp_path / "v.npy", 4)
  server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Service(), server)
  port = server.add_insecure_port("127.0.0.1:0")
  server.start()
  try:
    r = _client_cli("grpc_client", f"--server=127.0.0.1:{port}", f"--features={tmp_path / 'v.npy'}",
                    f"--query={query}", f"--duration={duration}", "--top_k=4",
                    f"--max_video_len={MAX_VIDEO_LEN}")
    assert r.returncode == 0, r.stderr[-3000:]
    np.testing.assert_allclose(json.loads(r.stdout)["windows"], want, rtol=1e-5)
  finally:
    server.stop(None)
  with _port_nothing_listens_on() as port:  # the server is gone
    r = _client_cli("grpc_client", f"--server=127.0.0.1:{port}", f"--features={tmp_path / 'v.npy'}",
                    "--query=a door", "--duration=9")
  assert r.returncode == 1 and "Traceback" not in r.stderr
  assert "UNAVAILABLE" in r.stderr and "gRPC port" in r.stderr


def test_readme_example_request_runs_on_the_signature(setup, loaded):
  """export/example_request.json (the README's curl body) names the signature's inputs;
  with its toy 4-d rows widened to this model's Dv it runs as TF Serving would run it."""
  with open(os.path.join(REPO, "export", "example_request.json")) as f:
    example = json.load(f)
  name, _ = _rest_decode(example)
  inputs = loaded.signatures[name].structured_input_signature[1]
  assert set(example["instances"][0]) == set(inputs)
  dv = VIDEO_DIM  # the signature leaves Dv open and checks it in the graph
  for inst in example["instances"]:
    inst["video_features"] = [(row * dv)[:dv] for row in inst["video_features"]]
  name, tensors = _rest_decode(example)
  out = loaded.signatures[name](**tensors)
  n = example["instances"][0]["video_length"]
  assert out["start_probs"].shape[0] == len(example["instances"])
  np.testing.assert_allclose(out["start_probs"].numpy()[:, :n].sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["rest_client", "grpc_client"])
@pytest.mark.parametrize("flag,message", [
    ("--top_k=-1", "argument --top_k: '-1': expected a whole number > 0"),
    ("--top_k=0", "argument --top_k: '0': expected a whole number > 0"),
    ("--max_video_len=0", "argument --max_video_len: '0': expected a whole number > 0"),
    ("--duration=nan", "argument --duration: 'nan': expected a number > 0")])
def test_client_flag_values_out_of_range_are_command_line_errors(name, flag, message):
  """Before: --top_k=-1 printed every window but the last, --top_k=0 all of them, and
  --max_video_len=0 failed in the pooling without naming the flag."""
  r = _client_cli(name, "--features=none.npy", "--query=a door", "--duration=30", flag)
  assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]


def test_clients_take_a_video_extracted_with_the_exports_recipe(tmp_path):
  """--video: the client extracts with the export's recorded recipe (cimha_export.json) and
  sends the same pooled features and the video's own duration; the misuses are named."""
  import keras
  from cimha_tf.data.pooling import pool_to_max_len
  from cimha_tf.video import extractor as extractor_lib
  from cimha_tf.video.recipe import Recipe
  from cimha_tf.video.synthetic import RED, write_coloured_video
  common = _load("request_common")
  keras.utils.set_random_seed(0)
  images = keras.Input((16, 16, 3))
  backbone = str(tmp_path / "backbone.keras")
  keras.Model(images, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(images))).save(backbone)
  recipe = Recipe("backbone", size=16, output_dim=4, weights=backbone)
  meta = tmp_path / "cimha_export.json"
  meta.write_text(json.dumps({"max_video_len": 8, "feature_recipe": recipe.to_dict()}))
  video = write_coloured_video(str(tmp_path / "v.mkv"), 30.0, {RED: (10.0, 16.0)})
  parser = common.argument_parser("", "localhost:8501")
  base = [f"--video={video}", "--query=the screen turns red", "--max_video_len=8"]
  args = parser.parse_args(base + [f"--recipe={meta}", f"--extractor_model={backbone}"])
  inputs = common.inputs_from_args(args)
  feats, _ = extractor_lib.user_model_extractor(backbone, recipe).extract_video(video)
  assert feats.shape == (15, 4)
  np.testing.assert_allclose(inputs["video_features"][0], pool_to_max_len(feats, 8), rtol=1e-6)
  assert inputs["duration"][0] == pytest.approx(30.0) and inputs["video_length"][0] == 8
  with pytest.raises(ValueError, match="--video needs --recipe"):
    common.inputs_from_args(parser.parse_args(base))
  with pytest.raises(ValueError, match="the duration comes from the video"):
    common.inputs_from_args(parser.parse_args(base + [f"--recipe={meta}", "--duration=3"]))
  meta.write_text(json.dumps({"max_video_len": 8, "feature_recipe": None}))
  with pytest.raises(ValueError, match="records no feature recipe"):
    common.inputs_from_args(parser.parse_args(base + [f"--recipe={meta}"]))
