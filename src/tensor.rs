//! `Tensor`: a shape, a device buffer and, when it came out of a recorded op, the autograd
//! node that made it. Cloning is cheap (an `Arc`); a reshape shares the buffer.

use crate::autograd::{self, Node};
use crate::backend::{Backend, Device, Storage};
use crate::rng::Rng;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) device: Device,
    pub(crate) storage: Arc<RwLock<Storage>>,
    /// Set on leaves the user wants gradients for (parameters); a result of a recorded op
    /// requires grad through its node.
    pub(crate) requires_grad: AtomicBool,
    pub(crate) grad: Mutex<Option<Tensor>>,
    pub(crate) node: Option<Node>,
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    pub(crate) fn from_parts(
        storage: Arc<RwLock<Storage>>,
        shape: Vec<usize>,
        device: Device,
        node: Option<Node>,
    ) -> Self {
        Tensor(Arc::new(Inner {
            id: next_id(),
            shape,
            device,
            storage,
            requires_grad: AtomicBool::new(false),
            grad: Mutex::new(None),
            node,
        }))
    }

    /// A leaf tensor around a freshly computed buffer.
    pub fn from_storage(storage: Storage, shape: &[usize]) -> Self {
        assert_eq!(
            storage.len(),
            numel(shape),
            "Tensor::from_storage: {} elements for shape {shape:?}",
            storage.len()
        );
        let device = storage.device();
        Self::from_parts(Arc::new(RwLock::new(storage)), shape.to_vec(), device, None)
    }

    /// A tensor from host data (row-major), placed on `device`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize], device: Device) -> Self {
        assert_eq!(data.len(), numel(shape), "Tensor::from_vec: {} elements for shape {shape:?}", data.len());
        Self::from_storage(device.backend().upload(data), shape)
    }

    pub fn zeros(shape: &[usize], device: Device) -> Self {
        Self::from_storage(device.backend().zeros(numel(shape)), shape)
    }

    pub fn full(shape: &[usize], value: f32, device: Device) -> Self {
        Self::from_vec(vec![value; numel(shape)], shape, device)
    }

    pub fn ones(shape: &[usize], device: Device) -> Self {
        Self::full(shape, 1.0, device)
    }

    pub fn scalar(value: f32, device: Device) -> Self {
        Self::from_vec(vec![value], &[1], device)
    }

    /// N(mean, std²) entries drawn in row-major order from `rng` (on the host, so the numbers
    /// depend on the seed alone).
    pub fn randn(shape: &[usize], mean: f32, std: f32, rng: &mut Rng, device: Device) -> Self {
        let mut data = vec![0.0; numel(shape)];
        rng.fill_normal(&mut data, mean, std);
        Self::from_vec(data, shape, device)
    }

    /// U[lo, hi) entries drawn in row-major order from `rng`.
    pub fn rand_uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut Rng, device: Device) -> Self {
        let mut data = vec![0.0; numel(shape)];
        rng.fill_uniform(&mut data, lo, hi);
        Self::from_vec(data, shape, device)
    }

    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    pub fn dims4(&self, op: &str) -> [usize; 4] {
        match *self.shape() {
            [n, c, h, w] => [n, c, h, w],
            ref s => panic!("{op}: expected an NCHW tensor, got shape {s:?}"),
        }
    }

    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    pub fn device(&self) -> Device {
        self.0.device
    }

    pub(crate) fn backend(&self) -> &'static dyn Backend {
        self.0.device.backend()
    }

    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// Read access to the buffer, for kernels.
    pub fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read().expect("tensor storage lock poisoned")
    }

    /// Write access to the buffer, for in-place updates outside the graph (optimisers,
    /// running statistics, loading weights). Every view of the buffer sees the change.
    pub fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.0.storage.write().expect("tensor storage lock poisoned")
    }

    pub fn to_vec(&self) -> Vec<f32> {
        self.backend().download(&self.storage())
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> f32 {
        assert_eq!(self.numel(), 1, "item: tensor of shape {:?} is not a scalar", self.shape());
        self.to_vec()[0]
    }

    /// Overwrite the contents from host data of the same length.
    pub fn copy_from_slice(&self, data: &[f32]) {
        assert_eq!(
            data.len(),
            self.numel(),
            "copy_from_slice: {} values into shape {:?}",
            data.len(),
            self.shape()
        );
        *self.storage_mut() = self.backend().upload(data.to_vec());
    }

    /// A new buffer with the same contents, not connected to the graph.
    pub fn deep_clone(&self) -> Tensor {
        Tensor::from_storage(self.backend().copy(&self.storage()), self.shape())
    }

    // ---- autograd surface -------------------------------------------------------------

    /// Whether gradients flow to or through this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.node.is_some() || self.0.requires_grad.load(Ordering::Relaxed)
    }

    /// Mark a leaf as wanting gradients (or not: freezing a parameter). Returns self.
    pub fn set_requires_grad(&self, on: bool) -> &Self {
        assert!(
            self.0.node.is_none(),
            "set_requires_grad: only leaf tensors (parameters, inputs) can be marked"
        );
        self.0.requires_grad.store(on, Ordering::Relaxed);
        self
    }

    pub fn is_leaf(&self) -> bool {
        self.0.node.is_none()
    }

    /// The accumulated gradient of a leaf, if a backward pass reached it.
    pub fn grad(&self) -> Option<Tensor> {
        self.0.grad.lock().expect("grad lock poisoned").clone()
    }

    pub fn zero_grad(&self) {
        *self.0.grad.lock().expect("grad lock poisoned") = None;
    }

    /// The same buffer, cut from the graph: no gradient flows back through the result.
    pub fn detach(&self) -> Tensor {
        Tensor::from_parts(self.0.storage.clone(), self.0.shape.clone(), self.0.device, None)
    }

    /// Backpropagate from this scalar: every leaf that requires grad and contributed to it
    /// gets d(self)/d(leaf) added to its `.grad()`.
    pub fn backward(&self) {
        autograd::backward(self);
    }

    /// Make a view with another shape of the same number of elements (shares the buffer).
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        assert_eq!(numel(shape), self.numel(), "reshape: cannot view shape {:?} as {shape:?}", self.shape());
        let old = self.shape().to_vec();
        autograd::record(
            "reshape",
            self.0.storage.clone(),
            shape.to_vec(),
            self.device(),
            vec![self.clone()],
            move |grad_out, _inputs| vec![Some(grad_out.reshape(&old))],
        )
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor(shape={:?}, device={}", self.shape(), self.device())?;
        if self.numel() <= 16 {
            write!(f, ", data={:?}", self.to_vec())?;
        }
        write!(f, ", requires_grad={})", self.requires_grad())
    }
}

/// Dropping the last handle of a long chain (a loss 100k ops deep) would recurse once per
/// node; unlink the graph iteratively instead.
impl Drop for Inner {
    fn drop(&mut self) {
        let Some(node) = self.node.take() else { return };
        let mut stack = node.into_inputs();
        while let Some(t) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(t.0)
                && let Some(n) = inner.node.take()
            {
                stack.extend(n.into_inputs());
            }
        }
    }
}
