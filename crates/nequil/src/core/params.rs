//! Parameters: one flat `f64` vector with a named layout.
//!
//! Every model stores its parameters θ in a single contiguous `Vec<f64>`. A [`Layout`] names the
//! blocks of that vector with PyTorch state-dict names (`layers.0.weight`, `layers.0.bias`, …) and
//! shapes; weight matrices use PyTorch's `[out, in]` row-major layout, so that block `W` of a dense
//! layer maps input `x ∈ ℝ^in` to `W x ∈ ℝ^out`. Symmetry generators act on the flat vector, so the
//! same machinery serves every model.

use crate::{invalid, Result};
use serde::Serialize;

/// One named block of the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Block {
    /// PyTorch state-dict name, e.g. `layers.1.weight`.
    pub name: String,
    /// Shape, row-major; `[out, in]` for weight matrices, `[out]` for biases.
    pub shape: Vec<usize>,
    /// Offset of the block's first element in the flat vector.
    pub offset: usize,
}

impl Block {
    /// Number of scalars in the block.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Whether the block holds no scalars.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The index range of the block in the flat vector.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// The named layout of a flat parameter vector: blocks in order, contiguous, without gaps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Layout {
    blocks: Vec<Block>,
    len: usize,
}

impl Layout {
    /// An empty layout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a block and returns its offset. Names must be unique.
    pub fn push(&mut self, name: impl Into<String>, shape: Vec<usize>) -> usize {
        let name = name.into();
        debug_assert!(self.find(&name).is_none(), "duplicate block {name}");
        let offset = self.len;
        let block = Block { name, shape, offset };
        self.len += block.len();
        self.blocks.push(block);
        offset
    }

    /// Total number of parameters P.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the layout has no parameters.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The blocks in order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The block with this name, if any.
    pub fn find(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// The block with this name, or an error naming it.
    pub fn block(&self, name: &str) -> Result<&Block> {
        self.find(name)
            .ok_or_else(|| invalid!("no parameter block named `{name}`"))
    }

    /// The block owning flat index `i`.
    pub fn block_of(&self, i: usize) -> Option<&Block> {
        self.blocks.iter().find(|b| b.range().contains(&i))
    }

    /// Squared Euclidean norm of each block of `theta`, in block order.
    pub fn block_norms2(&self, theta: &[f64]) -> Vec<f64> {
        self.blocks
            .iter()
            .map(|b| theta[b.range()].iter().map(|v| v * v).sum())
            .collect()
    }
}
