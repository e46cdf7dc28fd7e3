//! The interface of a model as a graph: operations with several inputs and parameter blocks
//! shared between nodes. Additive: the engine ([`crate::core::models::Model`]) stays a stack of
//! [`crate::core::layers::Layer`]s; this module fixes the contract the graph engine will build
//! on, with one two-input operation ([`Add`]), one parameterised operation that reads its weight
//! by name ([`MatVec`]), and a small reference executor ([`Graph`], allocating, for tests and
//! checks; not the engine).
//!
//! # Operations with several inputs
//!
//! An [`Op`] takes `k` inputs (`add` and `concat` two or more, attention three: query, key,
//! value), each a chunk of `b` samples, row-major, `b × in_dim_j`: `forward` gets them as
//! `&[&[f64]]`, and `backward` returns one input gradient per input (`dxs[j]`, `None` where it is
//! not needed: data). The R-operator takes one direction per input (`rxs[j]`, `None`: zero) and
//! gives one `R{dx_j}` per input. The conventions of [`crate::core::layers`] hold per input:
//! `dy` is `∂ℓ_i/∂y_i` per sample, no batch factor.
//!
//! # Parameter blocks shared between nodes
//!
//! A node does not own a slice of θ: it **names** the blocks it reads ([`Op::params`], e.g.
//! `embed.weight`), and the graph resolves each name through one [`ParamTable`] to a range of θ.
//! Two nodes naming the same block read the same values (tied embeddings: the input embedding and
//! the output projection). Every gradient an operation writes is **added** (`grads[k] += alpha ·
//! Σ_i g_i`, and the same for `Hv`), so the gradient of a shared block is the sum of its uses'
//! contributions, as the chain rule says. (A [`crate::core::layers::Layer`] overwrites its own
//! slice instead: a stack never shares.) Per-sample statistics of a shared block need the sum of
//! the uses per sample before squaring; the graph engine will form them per block, not per node.

mod add;
mod matvec;

pub use add::Add;
pub use matvec::MatVec;

use crate::{invalid, Result};
use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

/// One parameter block an operation reads, by name: the name resolved in the [`ParamTable`] and
/// the shape the operation expects (checked against the table's).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamUse {
    /// Full block name (`embed.weight`).
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
}

/// An operation of a graph: `y = op(x_1, …, x_k; θ_blocks)` on chunks of `b` samples (see the
/// module docs for the conventions). `p[k]` is the values of the block `params()[k]`, `v[k]` the
/// direction's part of it; `grads[k]` and `hv[k]` are where its gradient and its `Hv` are
/// **added**.
pub trait Op: Debug + Send + Sync {
    /// The operation's name (`add`, `matvec`).
    fn name(&self) -> &'static str;
    /// Per-sample shape of each input.
    fn in_shapes(&self) -> Vec<Vec<usize>>;
    /// Per-sample output shape.
    fn out_shape(&self) -> Vec<usize>;
    /// The parameter blocks read, by name (none for parameter-free operations).
    fn params(&self) -> Vec<ParamUse> {
        Vec::new()
    }
    /// `y = op(xs)` for `b` samples.
    fn forward(&self, p: &[&[f64]], xs: &[&[f64]], y: &mut [f64], b: usize);
    /// From `dy`: **writes** `dxs[j] = ∂ℓ_i/∂x_j,i` per sample for each input asked for, and
    /// **adds** `alpha · Σ_i g_i` to `grads[k]` for each block.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        p: &[&[f64]],
        xs: &[&[f64]],
        y: &[f64],
        dy: &[f64],
        dxs: &mut [Option<&mut [f64]>],
        grads: &mut [&mut [f64]],
        alpha: f64,
        b: usize,
    );
    /// R-forward: `ry = R{y}` along the parameter direction `v` and the input directions `rxs`.
    fn rforward(&self, p: &[&[f64]], v: &[&[f64]], xs: &[&[f64]], rxs: &[Option<&[f64]>], ry: &mut [f64], b: usize);
    /// R-backward: from `rdy = R{dy}`, **writes** `rdxs[j] = R{dx_j}` for each input asked for and
    /// **adds** `alpha · Σ_i R{g_i}` to `hv[k]`.
    #[allow(clippy::too_many_arguments)]
    fn rbackward(
        &self,
        p: &[&[f64]],
        v: &[&[f64]],
        xs: &[&[f64]],
        dy: &[f64],
        rxs: &[Option<&[f64]>],
        rdy: &[f64],
        rdxs: &mut [Option<&mut [f64]>],
        hv: &mut [&mut [f64]],
        alpha: f64,
        b: usize,
    );
}

/// The named parameter blocks of a graph and their places in the flat θ (declared once each;
/// any number of nodes may read one).
#[derive(Clone, Debug, Default)]
pub struct ParamTable {
    blocks: Vec<(String, Vec<usize>, Range<usize>)>,
}

impl ParamTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
    /// Declares the block `name` of shape `shape` after the others; an error if the name is taken
    /// or the size overflows.
    pub fn declare(&mut self, name: &str, shape: &[usize]) -> Result<Range<usize>> {
        if self.find(name).is_some() {
            return Err(invalid!("graph: two parameter blocks are named `{name}`"));
        }
        let len = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| invalid!("graph: block `{name}` of shape {shape:?} overflows"))?;
        let start = self.len();
        let r = start..start + len;
        self.blocks.push((name.to_string(), shape.to_vec(), r.clone()));
        Ok(r)
    }
    /// The range in θ and the shape of the block `name`.
    pub fn find(&self, name: &str) -> Option<(Range<usize>, &[usize])> {
        self.blocks
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, r)| (r.clone(), s.as_slice()))
    }
    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.blocks.last().map_or(0, |(_, _, r)| r.end)
    }
    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a node's input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The graph's data input `j`.
    Data(usize),
    /// The output of node `k` (an earlier node).
    Node(usize),
}

#[derive(Clone, Debug)]
struct GraphNode {
    op: Arc<dyn Op>,
    inputs: Vec<Source>,
    blocks: Vec<Range<usize>>,
}

/// A reference executor of a graph of [`Op`]s in the order they were added; the last node is the
/// output. Allocates its buffers per call: for tests and checks of the [`Op`] contract.
#[derive(Clone, Debug)]
pub struct Graph {
    data: Vec<Vec<usize>>,
    table: ParamTable,
    nodes: Vec<GraphNode>,
}

fn dim(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Graph {
    /// A graph with data inputs of the given per-sample shapes and the parameter table `table`.
    pub fn new(data: Vec<Vec<usize>>, table: ParamTable) -> Self {
        Graph {
            data,
            table,
            nodes: Vec::new(),
        }
    }

    /// Adds a node; its input shapes must match its sources' and its blocks must be in the table
    /// with the shapes it expects. Returns its index.
    pub fn push(&mut self, op: Arc<dyn Op>, inputs: Vec<Source>) -> Result<usize> {
        let k = self.nodes.len();
        let want = op.in_shapes();
        if want.len() != inputs.len() {
            return Err(invalid!(
                "graph: node {k} ({}) takes {} inputs, given {}",
                op.name(),
                want.len(),
                inputs.len()
            ));
        }
        for (j, (s, w)) in inputs.iter().zip(&want).enumerate() {
            let got = match *s {
                Source::Data(d) => self.data.get(d).cloned(),
                Source::Node(n) if n < k => Some(self.nodes[n].op.out_shape()),
                Source::Node(_) => None,
            }
            .ok_or_else(|| {
                invalid!(
                    "graph: node {k} ({}): input {j} is not an earlier node or data",
                    op.name()
                )
            })?;
            if &got != w {
                return Err(invalid!(
                    "graph: node {k} ({}): input {j} has shape {got:?}, it takes {w:?}",
                    op.name()
                ));
            }
        }
        let mut blocks: Vec<Range<usize>> = vec![];
        for u in op.params() {
            let (r, shape) = self
                .table
                .find(&u.name)
                .ok_or_else(|| invalid!("graph: node {k} ({}) reads `{}`, not in the table", op.name(), u.name))?;
            if shape != u.shape.as_slice() {
                return Err(invalid!(
                    "graph: node {k} ({}) reads `{}` as {:?}, the table has {shape:?}",
                    op.name(),
                    u.name,
                    u.shape
                ));
            }
            if blocks.contains(&r) {
                return Err(invalid!("graph: node {k} ({}) reads `{}` twice", op.name(), u.name));
            }
            blocks.push(r);
        }
        self.nodes.push(GraphNode { op, inputs, blocks });
        Ok(k)
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.table.len()
    }

    fn input<'a>(&self, s: Source, data: &[&'a [f64]], outs: &'a [Vec<f64>]) -> &'a [f64] {
        match s {
            Source::Data(d) => data[d],
            Source::Node(n) => &outs[n],
        }
    }

    /// Every node's output for `b` samples of the data inputs `data` (`b × dim` each).
    pub fn forward(&self, theta: &[f64], data: &[&[f64]], b: usize) -> Vec<Vec<f64>> {
        let mut outs: Vec<Vec<f64>> = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let p: Vec<&[f64]> = n.blocks.iter().map(|r| &theta[r.clone()]).collect();
            let xs: Vec<&[f64]> = n.inputs.iter().map(|&s| self.input(s, data, &outs)).collect();
            let mut y = vec![0.0; b * dim(&n.op.out_shape())];
            n.op.forward(&p, &xs, &mut y, b);
            outs.push(y);
        }
        outs
    }

    /// The loss `L = Σ_i ½‖y_i‖²` of the output `y` (the last node), its gradient and, with a
    /// direction `v`, the Hessian-vector product `H v` (Pearlmutter's R-operator through every
    /// node; `R{dy} = R{y}` at the output).
    pub fn loss_grad_hvp(
        &self,
        theta: &[f64],
        v: Option<&[f64]>,
        data: &[&[f64]],
        b: usize,
    ) -> (f64, Vec<f64>, Option<Vec<f64>>) {
        let outs = self.forward(theta, data, b);
        let last = self.nodes.len() - 1;
        let loss = 0.5 * outs[last].iter().map(|y| y * y).sum::<f64>();
        let np = self.n_params();
        let sizes: Vec<usize> = self.nodes.iter().map(|n| b * dim(&n.op.out_shape())).collect();
        // R-forward.
        let mut rys: Vec<Vec<f64>> = vec![];
        if let Some(v) = v {
            for n in &self.nodes {
                let p: Vec<&[f64]> = n.blocks.iter().map(|r| &theta[r.clone()]).collect();
                let vp: Vec<&[f64]> = n.blocks.iter().map(|r| &v[r.clone()]).collect();
                let xs: Vec<&[f64]> = n.inputs.iter().map(|&s| self.input(s, data, &outs)).collect();
                let rxs: Vec<Option<&[f64]>> = n
                    .inputs
                    .iter()
                    .map(|&s| match s {
                        Source::Data(_) => None,
                        Source::Node(k) => Some(rys[k].as_slice()),
                    })
                    .collect();
                let mut ry = vec![0.0; b * dim(&n.op.out_shape())];
                n.op.rforward(&p, &vp, &xs, &rxs, &mut ry, b);
                rys.push(ry);
            }
        }
        // Backward (and R-backward), accumulating each node's dy and R{dy} from its consumers.
        let mut dys: Vec<Vec<f64>> = sizes.iter().map(|&s| vec![0.0; s]).collect();
        let mut rdys: Vec<Vec<f64>> = sizes.iter().map(|&s| vec![0.0; s]).collect();
        dys[last].copy_from_slice(&outs[last]);
        if v.is_some() {
            rdys[last].copy_from_slice(&rys[last]);
        }
        let mut grad = vec![0.0; np];
        let mut hv = vec![0.0; np];
        for (k, n) in self.nodes.iter().enumerate().rev() {
            let p: Vec<&[f64]> = n.blocks.iter().map(|r| &theta[r.clone()]).collect();
            let xs: Vec<&[f64]> = n.inputs.iter().map(|&s| self.input(s, data, &outs)).collect();
            let mut dxs: Vec<Option<Vec<f64>>> = n
                .inputs
                .iter()
                .map(|&s| match s {
                    Source::Data(_) => None,
                    Source::Node(j) => Some(vec![0.0; sizes[j]]),
                })
                .collect();
            let mut rdxs = dxs.clone();
            {
                let mut gs = disjoint_blocks(&mut grad, &n.blocks);
                let mut refs: Vec<Option<&mut [f64]>> = dxs.iter_mut().map(|d| d.as_deref_mut()).collect();
                n.op.backward(&p, &xs, &outs[k], &dys[k], &mut refs, &mut gs, 1.0, b);
            }
            if let Some(v) = v {
                let vp: Vec<&[f64]> = n.blocks.iter().map(|r| &v[r.clone()]).collect();
                let rxs: Vec<Option<&[f64]>> = n
                    .inputs
                    .iter()
                    .map(|&s| match s {
                        Source::Data(_) => None,
                        Source::Node(j) => Some(rys[j].as_slice()),
                    })
                    .collect();
                let mut hs = disjoint_blocks(&mut hv, &n.blocks);
                let mut refs: Vec<Option<&mut [f64]>> = rdxs.iter_mut().map(|d| d.as_deref_mut()).collect();
                n.op.rbackward(&p, &vp, &xs, &dys[k], &rxs, &rdys[k], &mut refs, &mut hs, 1.0, b);
            }
            for (s, (dx, rdx)) in n.inputs.iter().zip(dxs.into_iter().zip(rdxs)) {
                if let (Source::Node(j), Some(dx), Some(rdx)) = (*s, dx, rdx) {
                    dys[j].iter_mut().zip(&dx).for_each(|(a, d)| *a += d);
                    rdys[j].iter_mut().zip(&rdx).for_each(|(a, d)| *a += d);
                }
            }
        }
        (loss, grad, v.map(|_| hv))
    }
}

/// Mutable views of the blocks `ranges` of `buf`, in order. A node reads each block once, so its
/// ranges are disjoint (two nodes may share a block; one node does not name a block twice).
fn disjoint_blocks<'a>(buf: &'a mut [f64], ranges: &[Range<usize>]) -> Vec<&'a mut [f64]> {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    order.sort_by_key(|&k| ranges[k].start);
    let mut out: Vec<Option<&'a mut [f64]>> = (0..ranges.len()).map(|_| None).collect();
    let mut rest = buf;
    let mut at = 0;
    for k in order {
        let r = &ranges[k];
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - at);
        let (mine, tail) = tail.split_at_mut(r.len());
        out[k] = Some(mine);
        rest = tail;
        at = r.end;
    }
    out.into_iter().map(|o| o.expect("every block taken")).collect()
}

#[cfg(test)]
mod tests;
