//! Reverse-mode autograd, small enough to read in one sitting.
//!
//! An op whose inputs need gradients records a `Node`: the inputs and a closure that maps
//! the gradient of the output to gradients of the inputs (computed with the same backend
//! kernels, never recorded). `backward` orders the graph topologically from the loss and
//! walks it once in reverse, summing gradients where a tensor was used more than once. As in
//! PyTorch, each node's saved tensors are freed as soon as its gradients are out, so memory
//! falls during backward instead of peaking at its end; a second backward through the same
//! graph is an error.

use crate::backend::{Device, Storage};
use crate::tensor::Tensor;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

type BackwardFn = dyn Fn(&Tensor, &[Tensor]) -> Vec<Option<Tensor>> + Send + Sync;

pub(crate) struct Node {
    pub(crate) op: &'static str,
    /// Taken (and so freed) when backward has passed through this node.
    pub(crate) parts: Mutex<Option<NodeParts>>,
}

pub(crate) struct NodeParts {
    pub(crate) inputs: Vec<Tensor>,
    /// (gradient of the output, the inputs) -> one optional gradient per input. It may return
    /// None for an input that does not require grad, and must for none that does.
    pub(crate) backward: Box<BackwardFn>,
}

impl Node {
    fn parts(&self) -> std::sync::MutexGuard<'_, Option<NodeParts>> {
        self.parts.lock().expect("autograd node lock poisoned")
    }

    /// The inputs, unless backward has already freed them.
    pub(crate) fn into_inputs(self) -> Vec<Tensor> {
        self.parts.into_inner().ok().flatten().map(|p| p.inputs).unwrap_or_default()
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// While alive, ops record nothing (as `torch.no_grad()`); the previous mode returns on drop.
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    pub fn new() -> Self {
        NoGradGuard { previous: GRAD_ENABLED.with(|g| g.replace(false)) }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Run `f` without recording.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    let _guard = NoGradGuard::new();
    f()
}

/// Wrap an op's result; attach a node when recording is on and some input requires grad.
pub(crate) fn record(
    op: &'static str,
    storage: Arc<RwLock<Storage>>,
    shape: Vec<usize>,
    device: Device,
    inputs: Vec<Tensor>,
    backward: impl Fn(&Tensor, &[Tensor]) -> Vec<Option<Tensor>> + Send + Sync + 'static,
) -> Tensor {
    let node = (is_grad_enabled() && inputs.iter().any(Tensor::requires_grad))
        .then(|| Node { op, parts: Mutex::new(Some(NodeParts { inputs, backward: Box::new(backward) })) });
    Tensor::from_parts(storage, shape, device, node)
}

/// `record` for a freshly computed buffer.
pub(crate) fn record_op(
    op: &'static str,
    out: Storage,
    shape: &[usize],
    inputs: Vec<Tensor>,
    backward: impl Fn(&Tensor, &[Tensor]) -> Vec<Option<Tensor>> + Send + Sync + 'static,
) -> Tensor {
    assert_eq!(
        out.len(),
        crate::tensor::numel(shape),
        "{op}: kernel returned {} elements for {shape:?}",
        out.len()
    );
    let device = out.device();
    record(op, Arc::new(RwLock::new(out)), shape.to_vec(), device, inputs, backward)
}

/// Nodes in an order where every tensor comes after all tensors it was computed from.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // Iterative post-order DFS: deep generator stacks must not overflow the stack.
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, children_done)) = stack.pop() {
        if children_done {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = &t.0.node {
            let parts = node.parts();
            let Some(parts) = parts.as_ref() else {
                panic!(
                    "backward: the graph through {} was already used by a backward pass, which \
                     freed its saved tensors; compute the forward again",
                    node.op
                )
            };
            for input in &parts.inputs {
                if input.requires_grad() && !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

pub(crate) fn backward(root: &Tensor) {
    assert_eq!(root.numel(), 1, "backward: needs a scalar loss, got shape {:?}", root.shape());
    assert!(root.requires_grad(), "backward: the loss does not depend on anything that requires grad");
    let _no_grad = NoGradGuard::new();
    let mut grads: HashMap<u64, Tensor> = HashMap::new();
    grads.insert(root.id(), Tensor::ones(root.shape(), root.device()));
    // Popped from the end: each tensor after everything computed from it. Dropping our handle
    // and the node's parts once done frees what nothing upstream still needs.
    let mut order = topological_order(root);
    while let Some(t) = order.pop() {
        let grad = grads.remove(&t.id());
        match &t.0.node {
            None => {
                if let Some(grad) = grad {
                    accumulate_leaf_grad(&t, &grad)
                }
            }
            Some(node) => {
                let op = node.op;
                let parts = node.parts().take().expect("a node is visited once per backward");
                let Some(grad) = grad else { continue };
                let input_grads = (parts.backward)(&grad, &parts.inputs);
                assert_eq!(input_grads.len(), parts.inputs.len(), "{op}: backward returned the wrong count");
                for (input, g) in parts.inputs.iter().zip(input_grads) {
                    if !input.requires_grad() {
                        continue;
                    }
                    let g = g.unwrap_or_else(|| panic!("{op}: no gradient for an input that requires grad"));
                    assert_eq!(g.shape(), input.shape(), "{op}: gradient shape differs from its input");
                    let sum = match grads.remove(&input.id()) {
                        Some(prev) => prev.add(&g),
                        None => g,
                    };
                    grads.insert(input.id(), sum);
                }
            }
        }
    }
}

/// Leaves sum gradients across backward calls, as in PyTorch, until `zero_grad`.
/// The stored gradient gets its own buffer: the incoming one may be shared with other nodes.
fn accumulate_leaf_grad(leaf: &Tensor, grad: &Tensor) {
    let mut slot = leaf.0.grad.lock().expect("grad lock poisoned");
    match slot.as_ref() {
        Some(existing) => {
            leaf.backend().axpby(1.0, &grad.storage(), 1.0, &mut existing.storage_mut());
        }
        None => *slot = Some(grad.deep_clone()),
    }
}
