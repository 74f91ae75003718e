//! Misusing the API with wrong shapes is a programming error: it panics, and the message
//! names the op and both shapes.

use dcgan::{
    Device, Tensor, batch_norm2d, binary_cross_entropy_with_logits, conv_transpose2d, conv2d, linear, matmul,
};

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape, Device::Cpu)
}

/// Runs `f`, expects a panic whose message contains every needle.
fn assert_panics_with(f: impl FnOnce() + std::panic::UnwindSafe, needles: &[&str]) {
    let err = std::panic::catch_unwind(f).expect_err("expected a panic");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap();
    for n in needles {
        assert!(msg.contains(n), "panic message {msg:?} lacks {n:?}");
    }
}

#[test]
fn conv2d_channel_mismatch() {
    assert_panics_with(
        || drop(conv2d(&zeros(&[2, 3, 8, 8]), &zeros(&[4, 5, 3, 3]), None, 1, 1)),
        &["conv2d", "[2, 3, 8, 8]", "[4, 5, 3, 3]"],
    );
}

#[test]
fn conv2d_not_nchw() {
    assert_panics_with(
        || drop(conv2d(&zeros(&[3, 8, 8]), &zeros(&[4, 3, 3, 3]), None, 1, 1)),
        &["conv2d", "[3, 8, 8]"],
    );
}

#[test]
fn conv2d_kernel_larger_than_input() {
    assert_panics_with(
        || drop(conv2d(&zeros(&[1, 1, 2, 2]), &zeros(&[1, 1, 5, 5]), None, 1, 0)),
        &["conv2d", "[1, 1, 2, 2]"],
    );
}

#[test]
fn conv_transpose2d_channel_mismatch() {
    assert_panics_with(
        || drop(conv_transpose2d(&zeros(&[2, 3, 4, 4]), &zeros(&[6, 2, 4, 4]), None, 2, 1, 0)),
        &["conv_transpose2d", "[2, 3, 4, 4]", "[6, 2, 4, 4]"],
    );
}

#[test]
fn conv_transpose2d_output_padding_not_below_stride() {
    assert_panics_with(
        || drop(conv_transpose2d(&zeros(&[1, 1, 4, 4]), &zeros(&[1, 1, 4, 4]), None, 2, 1, 2)),
        &["conv_transpose2d", "output_padding"],
    );
}

#[test]
fn matmul_inner_dimensions() {
    assert_panics_with(|| drop(matmul(&zeros(&[2, 3]), &zeros(&[4, 5]))), &["matmul", "[2, 3]", "[4, 5]"]);
}

#[test]
fn linear_features() {
    assert_panics_with(
        || drop(linear(&zeros(&[2, 3]), &zeros(&[4, 5]), None)),
        &["linear", "[2, 3]", "[4, 5]"],
    );
}

#[test]
fn elementwise_shapes() {
    assert_panics_with(|| drop(zeros(&[2, 3]).add(&zeros(&[3, 2]))), &["add", "[2, 3]", "[3, 2]"]);
    assert_panics_with(|| drop(zeros(&[2, 3]).mul(&zeros(&[6]))), &["mul", "[2, 3]", "[6]"]);
}

#[test]
fn batch_norm2d_parameter_shape() {
    assert_panics_with(
        || drop(batch_norm2d(&zeros(&[2, 3, 4, 4]), None, None, Some(&zeros(&[4])), None, true, 0.1, 1e-5)),
        &["batch_norm2d", "weight", "[4]", "[2, 3, 4, 4]"],
    );
}

#[test]
fn bce_shapes() {
    assert_panics_with(
        || drop(binary_cross_entropy_with_logits(&zeros(&[4]), &zeros(&[4, 1]))),
        &["binary_cross_entropy_with_logits", "[4]", "[4, 1]"],
    );
}

#[test]
fn reshape_element_count() {
    assert_panics_with(|| drop(zeros(&[2, 3]).reshape(&[4, 2])), &["reshape", "[2, 3]", "[4, 2]"]);
}

#[test]
fn from_vec_length() {
    assert_panics_with(
        || drop(Tensor::from_vec(vec![1.0; 5], &[2, 3], Device::Cpu)),
        &["from_vec", "5", "[2, 3]"],
    );
}
