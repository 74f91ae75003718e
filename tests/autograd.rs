//! Autograd semantics: accumulation when a tensor is used twice, detach, no_grad, frozen
//! parameters, zero_grad, and gradients summed across backward calls.

#[macro_use]
mod common;
use dcgan::nn::{Linear, Module};
use dcgan::{Device, NoGradGuard, Rng, Tensor, no_grad};

fn leaf(v: Vec<f32>, dev: Device) -> Tensor {
    let n = v.len();
    let t = Tensor::from_vec(v, &[n], dev);
    t.set_requires_grad(true);
    t
}

/// y = x·x + 3x uses x three times: dy/dx = 2x + 3.
fn tensor_used_twice_accumulates(dev: Device) {
    let x = leaf(vec![1.0, -2.0, 0.5], dev);
    x.mul(&x).add(&x.scale(3.0)).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![5.0, -1.0, 4.0]);
}

/// A diamond: a = 2x feeds both b = a·a and c = 3a; d(b + c)/dx = 2·(2a + 3).
fn diamond_graph(dev: Device) {
    let x = leaf(vec![1.0, 2.0], dev);
    let a = x.scale(2.0);
    a.mul(&a).add(&a.scale(3.0)).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![14.0, 22.0]);
}

fn detach_stops_the_gradient(dev: Device) {
    let x = leaf(vec![1.0, 2.0], dev);
    let y = x.mul(&x);
    // Only the attached factor carries gradient: d(x·stop(x))/dx = stop(x).
    y.mul(&x.detach()).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0 * 1.0, 2.0 * 2.0 * 2.0]);
    let d = x.detach();
    assert!(!d.requires_grad() && d.is_leaf());
    assert_eq!(d.to_vec(), x.to_vec(), "detach shares the values");
}

fn no_grad_records_nothing(dev: Device) {
    let x = leaf(vec![1.0, 2.0], dev);
    let y = no_grad(|| x.mul(&x).sum());
    assert!(!y.requires_grad() && y.is_leaf(), "no_grad result must carry no node");
    {
        let _g = NoGradGuard::new();
        assert!(!x.scale(2.0).requires_grad());
    }
    assert!(x.scale(2.0).requires_grad(), "recording resumes after the guard");
}

/// Freezing a parameter (as the GAN loop freezes D while G trains): it gets no gradient, yet
/// the gradient still flows through its layer to what came before.
fn frozen_parameters_get_no_gradient(dev: Device) {
    let mut rng = Rng::new(71);
    let first = Linear::new(3, 4, true, &mut rng, dev);
    let second = Linear::new(4, 1, true, &mut rng, dev);
    for p in second.parameters() {
        p.set_requires_grad(false);
    }
    let x = Tensor::randn(&[5, 3], 0.0, 1.0, &mut rng, dev);
    second.forward(&first.forward(&x).relu()).mean().backward();
    for p in second.parameters() {
        assert!(p.grad().is_none(), "frozen parameter got a gradient");
    }
    for p in first.parameters() {
        let g = p.grad().expect("gradient must flow through the frozen layer");
        assert!(g.to_vec().iter().any(|v| *v != 0.0));
    }
}

fn gradients_sum_across_backward_calls_until_zeroed(dev: Device) {
    let x = leaf(vec![1.0, 3.0], dev);
    x.mul(&x).sum().backward();
    x.mul(&x).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![4.0, 12.0]);
    x.zero_grad();
    assert!(x.grad().is_none());
    x.scale(5.0).sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![5.0, 5.0]);
}

/// A chain deeper than the call stack would allow for a recursive sort.
fn deep_chain_does_not_overflow(dev: Device) {
    let x = leaf(vec![1.0], dev);
    let mut y = x.clone();
    for _ in 0..100_000 {
        y = y.add_scalar(0.0);
    }
    y.sum().backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![1.0]);
}

#[test]
#[should_panic(expected = "needs a scalar loss")]
fn backward_from_non_scalar_panics() {
    leaf(vec![1.0, 2.0], Device::Cpu).scale(2.0).backward();
}

/// Backward frees each node's saved tensors as it passes (PyTorch without retain_graph), so
/// a second backward through the same graph must say so rather than reuse freed state.
#[test]
#[should_panic(expected = "already used by a backward pass")]
fn second_backward_through_a_graph_panics() {
    let x = leaf(vec![1.0, 2.0], Device::Cpu);
    let loss = x.mul(&x).sum();
    loss.backward();
    assert_eq!(x.grad().unwrap().to_vec(), vec![2.0, 4.0]);
    loss.backward();
}

device_tests!(
    tensor_used_twice_accumulates,
    diamond_graph,
    detach_stops_the_gradient,
    no_grad_records_nothing,
    frozen_parameters_get_no_gradient,
    gradients_sum_across_backward_calls_until_zeroed,
    deep_chain_does_not_overflow
);
