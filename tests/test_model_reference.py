"""The model against an independent numpy reading of docs/paper.md's eqs 1-16: one
sample at a time, unpadded, in float64, with the model's own weights; the model runs a
padded batch with NaN in its padding. Only the choices docs/paper.md lists ("Where the
implementation goes beyond the equations") are taken into the reference."""

import keras
import numpy as np
import pytest

from cimha_tf import model as M
from tests.helpers import tiny_model_config


def ln(x, layer):
  g, b = [np.asarray(w) for w in layer.get_weights()]
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + layer.epsilon) * g + b

def dense(x, layer):
  w = layer.get_weights()
  y = x @ w[0] + (w[1] if len(w) > 1 else 0)
  return np.maximum(y, 0) if layer.activation.__name__ == "relu" else y

def mha(layer, Q, KV):
  Wq, bq = [np.asarray(w) for w in layer._query_dense.get_weights()]
  Wk, bk = [np.asarray(w) for w in layer._key_dense.get_weights()]
  Wv, bv = [np.asarray(w) for w in layer._value_dense.get_weights()]
  Wo, bo = [np.asarray(w) for w in layer._output_dense.get_weights()]
  q = np.einsum("td,dnh->tnh", Q, Wq) + bq
  k = np.einsum("sd,dnh->snh", KV, Wk) + bk
  v = np.einsum("sd,dnh->snh", KV, Wv) + bv
  s = np.einsum("tnh,snh->nts", q, k) / np.sqrt(q.shape[-1])
  p = np.exp(s - s.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  o = np.einsum("nts,snh->tnh", p, v)
  return np.einsum("tnh,nhd->td", o, Wo) + bo, p

def sig(x):
  return 1 / (1 + np.exp(-x))

def lstm(layer, x):
  W, U, b = [np.asarray(w) for w in layer.get_weights()]
  u = U.shape[0]
  h, c, out = np.zeros(u), np.zeros(u), []
  for t in range(x.shape[0]):
    z = x[t] @ W + h @ U + b
    i, f, g, o = sig(z[:u]), sig(z[u:2*u]), np.tanh(z[2*u:3*u]), sig(z[3*u:])
    c = f * c + i * g
    h = o * np.tanh(c)
    out.append(h)
  return np.stack(out)

def bilstm(layer, x):
  return np.concatenate([lstm(layer.forward_lstm, x), lstm(layer.backward_lstm, x[::-1])[::-1]], -1)

def ffn(layer, x):
  y = dense(dense(x, layer.inner), layer.outer)
  skip = x if layer.skip is None else x @ np.asarray(layer.skip.get_weights()[0])
  return ln(skip + y, layer.norm)

def mlp(seq, x):
  d1, _, d2 = seq.layers
  return dense(dense(x, d1), d2)[..., 0]

def reference(model, c, feats, tokens):
  """feats (n, Dv) valid steps only; tokens (l,) valid words only."""
  g = model.get_layer
  v0 = dense(feats, g("video_projection").dense)                             # eq 1
  qe = g("query_encoder")
  emb = np.asarray(qe.embedding.get_weights()[0])
  q0 = bilstm(qe.bilstm, emb[tokens])                                        # eq 2
  qs, vs = g("query_self"), g("video_self")
  q = ln(q0 + mha(qs.mha, q0, q0)[0], qs.norm)                               # eq 3 (+post-LN)
  v = ln(v0 + mha(vs.mha, v0, v0)[0], vs.norm)                               # eq 4 (+post-LN)
  table = np.asarray(g("position").table)
  v_hat = ffn(g("video_ffn"), v) + table[:v.shape[0]]                        # eq 5
  q_hat = ffn(g("query_ffn"), q)                                             # eq 6
  cr = g("cross")
  qv, p8 = mha(cr.mha_qv, v_hat, q_hat)                                      # eq 8: Q=v_hat
  if c.cross_skip:
    qv = ln(v_hat + qv, cr.norm_qv)
  if c.variant == "mha":
    s = qv
  else:
    vq, _ = mha(cr.mha_vq, q_hat, v_hat)                                     # eq 7: Q=q_hat
    if c.cross_skip:
      vq = ln(q_hat + vq, cr.norm_vq)
    if c.cross_fusion == "backprojection":
      per_frame = p8.mean(0) @ vq
    else:
      per_frame = np.tile(vq.mean(0), (v_hat.shape[0], 1))
    s = np.concatenate([per_frame, qv], -1)                                  # eq 9
  if c.sentence_product:                                                     # config.py
    s = np.concatenate([s, v_hat * q_hat.mean(0)], -1)
  sh = g("span_head")
  hs = bilstm(sh.start_lstm, s)                                              # eq 10
  he = bilstm(sh.end_lstm, hs)                                               # eq 11
  cs = mlp(sh.start_mlp, np.concatenate([hs, s], -1))                        # eq 12
  ce = mlp(sh.end_mlp, np.concatenate([he, s], -1))                          # eq 13
  ps, pe = (np.exp(x - x.max()) / np.exp(x - x.max()).sum() for x in (cs, ce))  # eq 14
  if c.variant == "cimha":
    pin = sig(mlp(g("segment_head").mlp, s))                                 # eq 15
  else:
    pin = np.zeros(len(ps))
  return ps, pe, pin


CASES = [("cimha", "backprojection", True, "keras", False),
         ("cimha", "backprojection", False, "keras", False),
         ("cimha", "pool_tile", True, "keras", False),
         ("cimha_wo_ms", "backprojection", True, "keras", False),
         ("mha", "backprojection", False, "keras", False),
         ("cimha", "backprojection", True, "unrolled", False),
         ("cimha", "backprojection", True, "keras", True),
         ("mha", "backprojection", True, "keras", True)]


@pytest.mark.parametrize("variant,fusion,skip,lstm,product", CASES)
def test_model_is_the_equations(variant, fusion, skip, lstm, product):
  rng = np.random.default_rng(0)
  dv, vocab, lengths, qlens, n_max, l_max = 9, 30, [11, 5, 1], [3, 6, 1], 13, 7
  feats = rng.normal(size=(3, n_max, dv)).astype(np.float32)
  feats[0, 11:] = np.nan  # garbage in the padding must not reach any output
  mask = (np.arange(n_max)[None] < np.array(lengths)[:, None]).astype(np.float32)
  tokens = rng.integers(2, vocab, (3, l_max)).astype(np.int32)
  tokens[np.arange(l_max)[None] >= np.array(qlens)[:, None]] = 0
  # Widths all different, so a transposed or misrouted weight cannot line up by chance.
  c = tiny_model_config(variant, ffn_width=12, span_lstm_units=5, mlp_width=7, cross_fusion=fusion,
                  cross_skip=skip, lstm_implementation=lstm, sentence_product=product)
  keras.utils.set_random_seed(1)
  m = M.build_model(c, dv, vocab)
  for w in m.weights:  # a zero position table or unit LayerNorms would hide their misuse
    if "table" in w.path or "norm" in w.path:
      w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.5
               + (1 if w.path.endswith("gamma") else 0))
  out = {k: np.asarray(v) for k, v in m({"video_features": feats, "video_mask": mask,
                                          "query_tokens": tokens}, training=False).items()}
  for b, (n, l) in enumerate(zip(lengths, qlens)):
    ps, pe, pin = reference(m, c, feats[b, :n].astype(np.float64), tokens[b, :l])
    np.testing.assert_allclose(out["start_probs"][b, :n], ps, atol=1e-5)
    np.testing.assert_allclose(out["end_probs"][b, :n], pe, atol=1e-5)
    np.testing.assert_allclose(out["inside_probs"][b, :n], pin, atol=1e-5)
    for key in out:
      assert np.all(out[key][b, n:] == 0.0), key
