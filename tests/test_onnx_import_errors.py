"""rnnfast.onnx.load refuses what rnnfast cannot run, naming the node and attribute; bad call arguments
raise errors naming the input."""
import numpy as np
import pytest

import rnnfast.onnx
from rnnfast import nn
from rnnfast.models import LanguageModel, SequenceClassifier

from onnx_models import stack

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _attr(model, k, **attrs):
    model.graph.node[k].attribute.extend([helper.make_attribute(n, v) for n, v in attrs.items()])
    return model


def _node(model, op):
    return next(n for n in model.graph.node if n.op_type == op)


def test_path_or_model_type():
    with pytest.raises(TypeError, match="path_or_model: expected a path or an onnx.ModelProto, got int"):
        rnnfast.onnx.load(3)


@pytest.mark.parametrize("make,op", [(lambda: LanguageModel(7, 4, 5, seed=1), "MatMul"),
                                     (lambda: SequenceClassifier(2, 3, input_size=4, pooling="mean"), "ReduceSum")])
def test_operators_beyond_the_glue_are_refused(tmp_path, make, op):
    rnnfast.onnx.export(make().eval(), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=rf"node '.*' \({op}\): operator {op} is not supported"):
        rnnfast.onnx.load(tmp_path / "m.onnx")


def test_residual_stack_export_is_refused(tmp_path):
    """nn's residual=True exports an Add between layers: not glue that passes Y on unchanged."""
    rnnfast.onnx.export(nn.GRU(4, 4, num_layers=3, residual=True).eval(), tmp_path / "r.onnx")
    with pytest.raises(ValueError, match=r"node 'add_\d+' \(Add\): operator Add is not supported"):
        rnnfast.onnx.load(tmp_path / "r.onnx")


def test_graph_without_recurrent_node():
    f = TensorProto.FLOAT
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", f, [2])], [helper.make_tensor_value_info("y", f, [2])])
    with pytest.raises(ValueError, match="no RNN, LSTM or GRU node"):
        rnnfast.onnx.load(helper.make_model(g))


def test_other_domain():
    m = stack("GRU", 1, 1, H=3, I=2)
    m.graph.node[0].domain = "com.example"
    with pytest.raises(ValueError, match="node 'gru0' \\(GRU\\): operator domain 'com.example'"):
        rnnfast.onnx.load(m)


@pytest.mark.parametrize("op,attrs,match", [
    ("LSTM", dict(clip=3.0), "attribute clip=3.0 is not supported"),
    ("LSTM", dict(activations=["Sigmoid", "Relu", "Tanh"]), "attribute activations=.*defaults"),
    ("GRU", dict(activations=["HardSigmoid", "Tanh"]), "attribute activations="),
    ("RNN", dict(activations=["Sigmoid"]), "attribute activations=.*Tanh or Relu"),
    ("RNN", dict(activation_alpha=[0.5]), "attribute activation_alpha"),
    ("LSTM", dict(input_forget=1), "attribute input_forget=1"),
    ("RNN", dict(foo=1), "attribute 'foo' is not supported"),
    ("LSTM", dict(direction="sideways"), "attribute direction: expected"),
    ("GRU", dict(layout=2), "attribute layout: expected 0 or 1, got 2"),
])
def test_unsupported_attributes_are_named(op, attrs, match):
    m = stack(op, 1, 1, H=3, I=2)
    node = m.graph.node[0]
    keep = [a for a in node.attribute if a.name not in attrs]
    del node.attribute[:]
    node.attribute.extend(keep)
    _attr(m, 0, **attrs)
    with pytest.raises(ValueError, match=rf"node '{op.lower()}0' \({op}\): {match}"):
        rnnfast.onnx.load(m)


def test_rnn_directions_with_different_activations():
    m = stack("RNN", 1, 2, H=3, I=2, attrs=dict(activations=["Tanh", "Relu"]))
    with pytest.raises(ValueError, match="attribute activations=\\['Tanh', 'Relu'\\].*same in both directions"):
        rnnfast.onnx.load(m)


def test_stack_of_mixed_gru_forms_is_refused():
    m = stack("GRU", 2, 1, H=3, I=2)
    next(a for a in m.graph.node[-1].attribute if a.name == "linear_before_reset").i = 0
    with pytest.raises(ValueError, match="linear_before_reset False differs"):
        rnnfast.onnx.load(m)


def test_weights_must_be_constants():
    m = stack("LSTM", 1, 1, H=3, I=2)
    w = next(t for t in m.graph.initializer if t.name == "W0")
    m.graph.input.append(helper.make_tensor_value_info("W0", TensorProto.FLOAT, list(w.dims)))
    m.graph.initializer.remove(w)
    with pytest.raises(ValueError, match="input W \\('W0'\\) must be an initializer or a Constant"):
        rnnfast.onnx.load(m)


def test_weight_shapes():
    m = stack("GRU", 1, 1, H=3, I=2)
    next(a for a in m.graph.node[0].attribute if a.name == "hidden_size").i = 4  # no longer R's
    with pytest.raises(ValueError, match="with hidden_size=4 .* expected W \\(1, 12, I\\) and R \\(1, 12, 4\\)"):
        rnnfast.onnx.load(m)
    m = stack("GRU", 1, 1, H=3, I=2)
    b = next(t for t in m.graph.initializer if t.name == "B0")
    b.CopyFrom(numpy_helper.from_array(np.zeros((1, 9), np.float32), "B0"))
    with pytest.raises(ValueError, match="expected B of shape \\(1, 18\\), got \\(1, 9\\)"):
        rnnfast.onnx.load(m)


def test_stack_layers_must_agree():
    with pytest.raises(ValueError, match="node 'lstm1' \\(LSTM\\): hidden_size 5 differs from the first layer's 4"):
        rnnfast.onnx.load(stack("LSTM", 2, 1, H=4, I=3, hidden=[4, 5]))
    m = stack("GRU", 2, 1, H=4, I=3)
    m.graph.node[-1].op_type = "RNN"  # weights of a GRU read as an RNN's: shapes say so first
    with pytest.raises(ValueError, match="node 'gru1' \\(RNN\\)"):
        rnnfast.onnx.load(m)


def test_layers_with_different_lengths_inputs():
    m = stack("GRU", 2, 1, H=4, I=3, lengths=True)
    m.graph.node[-1].input[4] = ""
    with pytest.raises(ValueError, match="read different sequence_lens"):
        rnnfast.onnx.load(m)


def test_parallel_recurrent_nodes_are_not_a_stack():
    m = stack("GRU", 2, 1, H=4, I=4)
    m.graph.node[-1].input[0] = "X"
    del m.graph.node[1]  # the glue
    with pytest.raises(ValueError, match="node 'gru1' \\(GRU\\): input X must be the output Y of node 'gru0'"):
        rnnfast.onnx.load(m)


def test_state_from_another_layer_is_refused():
    m = stack("GRU", 2, 1, H=4, I=3)
    m.graph.node[-1].input.append("Y_h0")  # X W R B lens initial_h
    with pytest.raises(ValueError, match="input initial_h is computed from another recurrent node's output"):
        rnnfast.onnx.load(m)


def _wrong_glue(nodes, inits, y, k, layout, D):
    """(T, D, B, H) -> (T, B, H, D) -> (T, B, H*D): right shape, directions interleaved."""
    nodes.append(helper.make_node("Transpose", [y], [f"t{k}"], perm=[0, 2, 3, 1]))
    inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), f"shape{k}"))
    nodes.append(helper.make_node("Reshape", [f"t{k}", f"shape{k}"], [f"x{k + 1}"]))
    return f"x{k + 1}"


def test_glue_that_reorders_features_is_refused():
    with pytest.raises(ValueError, match="do not pass Y on as the next layer's input .*in another order"):
        rnnfast.onnx.load(stack("LSTM", 2, 2, H=3, I=2, glue=_wrong_glue))


def test_glue_that_reads_a_graph_input_is_refused():
    def glue(nodes, inits, y, k, layout, D):
        nodes.append(helper.make_node("Squeeze", [y, "lens"], [f"x{k + 1}"]))
        return f"x{k + 1}"
    m = stack("RNN", 2, 1, H=3, I=2, lengths=True, glue=glue)
    with pytest.raises(ValueError, match="X reads 'lens', not only the lower layer's output Y"):
        rnnfast.onnx.load(m)


def test_inner_outputs_cannot_leave_the_stack():
    m = stack("RNN", 2, 1, H=3, I=2)
    m.graph.output.append(helper.make_tensor_value_info("Y0", TensorProto.FLOAT, None))
    with pytest.raises(ValueError, match="graph output 'Y0' is an inner layer's output"):
        rnnfast.onnx.load(m)
    m = stack("RNN", 2, 1, H=3, I=2)
    m.graph.node.append(helper.make_node("Identity", ["x1"], ["copy"], name="peek"))
    m.graph.output.append(helper.make_tensor_value_info("copy", TensorProto.FLOAT, None))
    with pytest.raises(ValueError, match="node 'peek' \\(Identity\\) reads 'x1', an inner layer's output"):
        rnnfast.onnx.load(m)


def test_constant_forms():
    m = stack("GRU", 2, 1, H=3, I=2)  # the glue's axes as Constant value_ints, not an initializer
    m.graph.initializer.remove(next(t for t in m.graph.initializer if t.name == "axes0"))
    m.graph.node.insert(0, helper.make_node("Constant", [], ["axes0"], value_ints=[1]))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 2)).astype(np.float32)
    assert rnnfast.onnx.load(m)(X=x)[0].shape == (4, 1, 2, 3)
    m.graph.node[0].CopyFrom(helper.make_node("Constant", [], ["axes0"], value_string="1"))
    with pytest.raises(ValueError, match="attribute \\['value_string'\\] is not supported"):
        rnnfast.onnx.load(m)


# call arguments -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run():
    return rnnfast.onnx.load(stack("LSTM", 2, 2, H=5, I=4, lengths=True, states=True))


def _x(T=6, B=3, I=4):
    return np.random.default_rng(0).standard_normal((T, B, I)).astype(np.float32)


def test_unknown_and_missing_inputs(run):
    with pytest.raises(TypeError, match="'Z' is not an input of the graph: expected \\['X', 'lens', 'h0'"):
        run(X=_x(), Z=1)
    with pytest.raises(TypeError, match="'W0' is not an input"):
        run(X=_x(), W0=np.zeros(3))
    with pytest.raises(TypeError, match="missing input 'X'"):
        run(lens=np.array([1, 2, 3], np.int32))


@pytest.mark.parametrize("feed,exc,match", [
    (dict(X=np.zeros((6, 3, 4), np.int32)), TypeError, "X: expected a float32 array, got dtype int32"),
    (dict(X=np.zeros((6, 3), np.float32)), ValueError, "X: expected shape \\(T, B, 4\\), got \\(6, 3\\)"),
    (dict(X=np.zeros((6, 3, 5), np.float32)), ValueError, "X: expected shape \\(T, B, 4\\), got \\(6, 3, 5\\)"),
    (dict(lens=np.array([1.0, 2.0, 3.0])), TypeError, "lens: expected an integer array, got dtype float64"),
    (dict(lens=np.array([0, 2, 3], np.int32)), ValueError, "lens: expected lengths in \\[1, 6\\], got \\[0, 2, 3\\]"),
    (dict(lens=np.array([7, 2, 3], np.int32)), ValueError, "lens: expected lengths in \\[1, 6\\]"),
    (dict(lens=np.array([1, 2], np.int32)), ValueError, "lens: expected an integer array of shape \\(3,\\)"),
    (dict(h0=np.zeros((2, 4, 5), np.float32)), ValueError, "h0: expected initial_h of shape \\(2, 3, 5\\), got"),
    (dict(c1=np.zeros((2, 3, 6), np.float32)), ValueError, "c1: expected shape \\(2, B, 5\\), got \\(2, 3, 6\\)"),
    (dict(h1="abc"), TypeError, "h1: expected a float32 array, got dtype <U3"),
    (dict(X=np.zeros((0, 3, 4), np.float32), lens=None), ValueError, "X: expected a non-empty sequence and batch"),
])
def test_bad_call_arguments_are_named(run, feed, exc, match):
    with pytest.raises(exc, match=match):
        run(**{k: v for k, v in {"X": _x(), **feed}.items() if v is not None})


def test_repr_names_inputs_outputs_and_module(run):
    assert repr(run) == ("Session(inputs=['X', 'lens', 'h0', 'c0', 'h1', 'c1'], outputs=['Y1', 'Y_h0', 'Y_c0', "
                         "'Y_h1', 'Y_c1'], module=LSTM(4, 5, num_layers=2, bidirectional=True))")


def test_feature_count_checked_without_declared_shape():
    m = stack("RNN", 1, 1, H=3, I=4)
    m.graph.input[0].CopyFrom(helper.make_tensor_value_info("X", TensorProto.FLOAT, None))
    with pytest.raises(ValueError, match="X: expected 4 features per step, got shape \\(6, 3, 5\\)"):
        rnnfast.onnx.load(m)(X=_x(I=5))


def test_output_that_needs_a_missing_input():
    m = stack("RNN", 1, 1, H=3, I=2, states=True)
    m.graph.node.append(helper.make_node("Identity", ["h0"], ["h0_copy"]))
    m.graph.output.append(helper.make_tensor_value_info("h0_copy", TensorProto.FLOAT, None))
    with pytest.raises(TypeError, match="missing input 'h0': output 'h0_copy' needs it"):
        rnnfast.onnx.load(m)(X=_x(I=2))


def test_glue_failing_on_the_inputs_names_the_node():
    m = stack("RNN", 1, 1, H=3, I=2)
    m.graph.initializer.append(numpy_helper.from_array(np.array([6, 3, 2], np.int64), "fixed"))
    m.graph.node.insert(0, helper.make_node("Reshape", ["X", "fixed"], ["X6"], name="bake"))
    m.graph.node[1].input[0] = "X6"
    run = rnnfast.onnx.load(m)
    assert run(X=_x(I=2))[0].shape == (6, 1, 3, 3)
    with pytest.raises(ValueError, match="node 'bake' \\(Reshape\\) failed on these inputs"):
        run(X=_x(T=5, I=2))


def test_module_weights_follow_edits():
    """The session runs its .module: what a user changes there is what the session computes."""
    run = rnnfast.onnx.load(stack("GRU", 1, 1, H=3, I=2))
    x = _x(I=2)
    before = run(X=x)[0]
    run.module.weight_hh_l0.data = np.zeros((9, 3), np.float32)
    after = run(X=x)[0]
    assert not np.allclose(before, after)
    y, _ = run.module(x)
    np.testing.assert_array_equal(after[:, 0], y)
