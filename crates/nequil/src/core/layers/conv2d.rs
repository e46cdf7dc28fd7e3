//! `conv2d`: a 2-D convolution (PyTorch `nn.Conv2d(C, O, k, stride, padding, dilation, groups)`),
//! `[C, H, W] → [O, H', W']` with `H' = ⌊(H + p_top + p_bottom − d_h (k_h − 1) − 1)/s⌋ + 1`;
//! weight `[O, C/G, k_h, k_w]`, optional bias `[O]`; zero padding (`p` on every side, `[p_h, p_w]`,
//! `"valid"` = 0, or `"same"`: stride 1 and `d (k − 1)` in all, its half (rounded down) before and
//! the rest after, as PyTorch). With `G` groups, output channels `g·O/G … (g+1)·O/G − 1` see only
//! input channels `g·C/G … (g+1)·C/G − 1` (`G = C`: depthwise). `conv1d` (`nn.Conv1d`, `[C, L] →
//! [O, L']`, weight `[O, C/G, k]`) is the same layer with height 1.
//!
//! With the input unfolded into `X_i` (`P × K`: one row per output position, `K = C k_h k_w`
//! columns, im2col) and the output gradient `Δ_i` arranged `P × O`, the layer is `Y_i = X_i Wᵀ + b`,
//! so:
//! * the mean gradient is `(1/b) Σ_i Δ_iᵀ X_i` (one GEMM over the chunk's rows);
//! * the per-sample gradient sums over positions, `G_i = Δ_iᵀ X_i` (`O × K`): the statistics form
//!   it one sample at a time (one small GEMM each; never a batch × P matrix) and accumulate its
//!   squares or its quadratic form;
//! * the R-operator: `R{Y} = X Vᵀ + R{X} Wᵀ + c`, `R{dX} = col2im(R{Δ} W + Δ V)`, and the weight
//!   block of `Hv` is `Σ_i (R{Δ_i}ᵀ X_i + Δ_iᵀ R{X_i})`.
//!
//! With groups, each group is its own such layer on its own block of rows of `X_iᵀ` and of `W`
//! (contiguous in both): one GEMM per group.
//!
//! Samples are processed one at a time with the unfolded input kept transposed, `X_iᵀ` (`K × P`,
//! gathered through a precomputed index table), so that the output `W X_iᵀ` is already in the
//! layer's `[O, H', W']` layout and no transposes are needed. Output channel `o` is a unit (`W[o]`,
//! `b_o` scale it); a set of whole input channels is absorbed by the weights that read them
//! (`W[:, c]`, within its group; zero padding stays zero under scaling).

use super::max_pool2d::whole_channels;
use super::{checked_size, chw, BlockInit, BlockSpec, BuildLayer, Fwd, Layer, Pass, RFwd, Units};
use crate::core::linalg::{gemm_nn, gemm_nt, gemm_tn};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "conv2d", out_channels, kernel, stride = 1, padding = 0, dilation = 1, groups = 1,
/// bias = true }`: `nn.Conv2d(·, out_channels, kernel, stride, padding, dilation, groups, bias)`
/// on `[C, H, W]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Conv2dConfig {
    /// Output channels (≥ 1).
    pub out_channels: usize,
    /// `k` or `[k_h, k_w]` (each ≥ 1).
    pub kernel: KernelSpec,
    /// Stride along both axes (≥ 1; PyTorch's default 1).
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding: `p` on every side, `[p_h, p_w]`, `"valid"` or `"same"` (PyTorch's default 0).
    #[serde(default)]
    pub padding: Padding,
    /// Spacing of the kernel's taps: `d` or `[d_h, d_w]` (each ≥ 1; PyTorch's default 1).
    #[serde(default = "one_pair")]
    pub dilation: KernelSpec,
    /// Groups of channels (≥ 1, dividing the input and output channels; PyTorch's default 1).
    #[serde(default = "one")]
    pub groups: usize,
    /// With a bias (PyTorch's default true).
    #[serde(default = "yes")]
    pub bias: bool,
}

/// A convolution's zero padding: `1`, `[1, 2]` (per axis, both sides), `"valid"` (none) or
/// `"same"` (the output as large as the input; stride 1).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Padding {
    /// The same on every side.
    All(usize),
    /// `[p_h, p_w]` (conv2d only).
    Pair([usize; 2]),
    /// `"valid"` or `"same"`.
    Mode(PaddingMode),
}

/// PyTorch's padding strings.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    /// No padding.
    Valid,
    /// `d (k − 1)` zeros in all per axis, half (rounded down) before and the rest after; stride 1.
    Same,
}

impl Default for Padding {
    fn default() -> Self {
        Padding::All(0)
    }
}

impl From<usize> for Padding {
    fn from(p: usize) -> Self {
        Padding::All(p)
    }
}

fn one_pair() -> KernelSpec {
    KernelSpec::Square(1)
}

/// The zeros before and after one axis of a convolution: `(before, after)`, or an error naming
/// `key.padding` when "same" meets a stride other than 1.
fn axis_padding(key: &str, padding: &Padding, axis: usize, dilated: usize, stride: usize) -> Result<(usize, usize)> {
    Ok(match padding {
        Padding::All(p) => (*p, *p),
        Padding::Pair(p) => (p[axis], p[axis]),
        Padding::Mode(PaddingMode::Valid) => (0, 0),
        Padding::Mode(PaddingMode::Same) => {
            if stride != 1 {
                return Err(invalid!(
                    "{key}.padding: \"same\" needs stride 1 (PyTorch refuses it too), got stride {stride}"
                ));
            }
            let total = dilated - 1;
            (total / 2, total - total / 2)
        }
    })
}

/// The geometry of a convolution once its input is known (see [`Conv2d::with_geometry`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvGeometry {
    /// `(k_h, k_w)`.
    pub kernel: (usize, usize),
    /// Stride along both axes.
    pub stride: usize,
    /// Zeros `(top, bottom, left, right)`.
    pub pad: (usize, usize, usize, usize),
    /// `(d_h, d_w)`.
    pub dilation: (usize, usize),
    /// Groups of channels.
    pub groups: usize,
}

/// Checks a convolution's configuration against its input `[c, h, w]` and returns its geometry
/// and output size `(H', W')`, or an error naming `key` and the field at fault (`kind` names the
/// layer in messages; a conv1d has `h = 1` and a kernel height of 1).
#[allow(clippy::too_many_arguments)]
fn geometry(
    key: &str,
    kind: &str,
    [c, h, w]: [usize; 3],
    out_channels: usize,
    kernel: (usize, usize),
    stride: usize,
    padding: &Padding,
    dilation: (usize, usize),
    groups: usize,
) -> Result<(ConvGeometry, usize, usize)> {
    for (field, v) in [
        ("out_channels", out_channels),
        ("kernel", kernel.0.min(kernel.1)),
        ("stride", stride),
        ("dilation", dilation.0.min(dilation.1)),
        ("groups", groups),
    ] {
        if v == 0 {
            return Err(invalid!("{key}.{field}: must be ≥ 1"));
        }
    }
    if !c.is_multiple_of(groups) || !out_channels.is_multiple_of(groups) {
        return Err(invalid!(
            "{key}.groups: {groups} must divide the input channels ({c}) and out_channels ({out_channels})"
        ));
    }
    let dil = |k: usize, d: usize| -> Result<usize> {
        (k - 1)
            .checked_mul(d)
            .and_then(|v| v.checked_add(1))
            .filter(|v| *v <= super::MAX_VALUES)
            .ok_or_else(|| invalid!("{key}.dilation: {d} spreads the kernel over more than 2^48 values"))
    };
    let (eh, ew) = (dil(kernel.0, dilation.0)?, dil(kernel.1, dilation.1)?);
    let (pt, pb) = axis_padding(key, padding, 0, eh, stride)?;
    let (pl, pr) = axis_padding(key, padding, 1, ew, stride)?;
    let (ph, pw) = (
        checked_size(key, "the padded height", &[h.saturating_add(pt).saturating_add(pb)])?,
        checked_size(key, "the padded width", &[w.saturating_add(pl).saturating_add(pr)])?,
    );
    if ph < eh || pw < ew {
        return Err(invalid!(
            "{key}.kernel: {}×{} (dilated: {eh}×{ew}) is larger than the padded input {ph}×{pw} of the {kind}",
            kernel.0,
            kernel.1
        ));
    }
    // The unfold table indexes a sample's values with 32 bits (u32::MAX marks padding).
    if c * h * w >= u32::MAX as usize {
        return Err(invalid!(
            "{key}: a sample of shape [{c}, {h}, {w}] has {} values; {kind} indexes at most {}",
            c * h * w,
            u32::MAX - 1
        ));
    }
    let (ho, wo) = ((ph - eh) / stride + 1, (pw - ew) / stride + 1);
    checked_size(
        key,
        "the unfolded input (C·k_h·k_w × H'·W')",
        &[c, kernel.0, kernel.1, ho, wo, 2],
    )?;
    checked_size(
        key,
        "the weight [O, C/G, k_h, k_w]",
        &[out_channels, c / groups, kernel.0, kernel.1],
    )?;
    checked_size(key, "the output", &[out_channels, ho, wo])?;
    Ok((
        ConvGeometry {
            kernel,
            stride,
            pad: (pt, pb, pl, pr),
            dilation,
            groups,
        },
        ho,
        wo,
    ))
}

/// A convolution kernel size: `3` or `[3, 5]`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum KernelSpec {
    /// Square.
    Square(usize),
    /// `[k_h, k_w]`.
    Rect([usize; 2]),
}

impl KernelSpec {
    /// `(k_h, k_w)`.
    pub fn pair(self) -> (usize, usize) {
        match self {
            KernelSpec::Square(k) => (k, k),
            KernelSpec::Rect([a, b]) => (a, b),
        }
    }
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}

impl BuildLayer for Conv2dConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let chw = chw(key, "conv2d", inp)?;
        let (geo, _, _) = geometry(
            key,
            "conv2d",
            chw,
            self.out_channels,
            self.kernel.pair(),
            self.stride,
            &self.padding,
            self.dilation.pair(),
            self.groups,
        )?;
        Ok(Arc::new(Conv2d::with_geometry(
            chw,
            self.out_channels,
            geo,
            self.bias,
            false,
        )))
    }
}

/// `{ type = "conv1d", out_channels, kernel, stride = 1, padding = 0, dilation = 1, groups = 1,
/// bias = true }`: `nn.Conv1d(·, out_channels, kernel, stride, padding, dilation, groups, bias)`
/// on `[C, L]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Conv1dConfig {
    /// Output channels (≥ 1).
    pub out_channels: usize,
    /// Kernel size (≥ 1).
    pub kernel: usize,
    /// Stride (≥ 1; PyTorch's default 1).
    #[serde(default = "one")]
    pub stride: usize,
    /// Zero padding: `p` on both sides, `"valid"` or `"same"` (PyTorch's default 0).
    #[serde(default)]
    pub padding: Padding,
    /// Spacing of the kernel's taps (≥ 1; PyTorch's default 1).
    #[serde(default = "one")]
    pub dilation: usize,
    /// Groups of channels (≥ 1, dividing the input and output channels; PyTorch's default 1).
    #[serde(default = "one")]
    pub groups: usize,
    /// With a bias (PyTorch's default true).
    #[serde(default = "yes")]
    pub bias: bool,
}

impl BuildLayer for Conv1dConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let [c, l] = match inp {
            [c, l] => [*c, *l],
            _ => return Err(invalid!("{key}: conv1d needs inputs of shape [C, L], got {inp:?}")),
        };
        // Along the one axis: the padding of the width (a pair does not apply).
        let padding = match &self.padding {
            Padding::All(p) => Padding::Pair([0, *p]),
            Padding::Pair(_) => {
                return Err(invalid!(
                    "{key}.padding: conv1d takes one size, \"valid\" or \"same\", not a pair"
                ))
            }
            Padding::Mode(PaddingMode::Valid) => Padding::Pair([0, 0]),
            Padding::Mode(PaddingMode::Same) => Padding::Mode(PaddingMode::Same),
        };
        let (geo, _, _) = geometry(
            key,
            "conv1d",
            [c, 1, l],
            self.out_channels,
            (1, self.kernel),
            self.stride,
            &padding,
            (1, self.dilation),
            self.groups,
        )?;
        Ok(Arc::new(Conv2d::with_geometry(
            [c, 1, l],
            self.out_channels,
            geo,
            self.bias,
            true,
        )))
    }
}

/// A 2-D convolution (see the module docs).
#[derive(Clone, Debug)]
pub struct Conv2d {
    inp: [usize; 3],
    out: [usize; 3],
    kh: usize,
    kw: usize,
    stride: usize,
    /// Zeros `(top, bottom, left, right)`.
    pad: (usize, usize, usize, usize),
    /// `(d_h, d_w)`.
    dil: (usize, usize),
    groups: usize,
    bias: bool,
    /// A conv1d: shapes `[C, L]`, `[O, L']` and a weight `[O, C/G, k]` (the layer runs on
    /// `[C, 1, L]`).
    one_d: bool,
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    /// For entry `(j, p)` of the unfolded input `X_iᵀ` (`K × P`, row j = one (channel, k_y, k_x),
    /// column p = one output position): the input offset within a sample, or `u32::MAX` for
    /// zero padding. Built on first use, so that building a model allocates nothing of the size
    /// of its inputs (a run's memory is checked before it starts; the table is a quarter of the
    /// layer's scratch space, [`Layer::scratch_len`]).
    gather: std::sync::OnceLock<Vec<u32>>,
}

impl Conv2d {
    /// `out_channels` filters of `kernel = (k_h, k_w)` over `[C, H, W]` inputs, zero padding `pad`
    /// on every side, no dilation, one group. The output must not be empty (checked by the model
    /// builder: `H + 2p ≥ k_h`, stride ≥ 1), and a sample's input must have fewer than 2³² values.
    pub fn new(
        inp: [usize; 3],
        out_channels: usize,
        kernel: (usize, usize),
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> Self {
        let geo = ConvGeometry {
            kernel,
            stride,
            pad: (pad, pad, pad, pad),
            dilation: (1, 1),
            groups: 1,
        };
        Self::with_geometry(inp, out_channels, geo, bias, false)
    }

    /// `out_channels` filters over `[C, H, W]` inputs with the geometry `geo` (checked by the
    /// configuration's builder: a non-empty output, groups dividing both channel counts); a
    /// conv1d (`one_d`, `H = 1`, kernel height 1) shows its shapes without the height.
    pub fn with_geometry(inp: [usize; 3], out_channels: usize, geo: ConvGeometry, bias: bool, one_d: bool) -> Self {
        let [c, h, w] = inp;
        let (pt, pb, pl, pr) = geo.pad;
        let o = |n: usize, k: usize, d: usize| {
            let e = d * (k - 1) + 1;
            if n < e || geo.stride == 0 {
                0
            } else {
                (n - e) / geo.stride + 1
            }
        };
        let (ho, wo) = (
            o(h + pt + pb, geo.kernel.0, geo.dilation.0),
            o(w + pl + pr, geo.kernel.1, geo.dilation.1),
        );
        let (in_shape, out_shape) = if one_d {
            (vec![c, w], vec![out_channels, wo])
        } else {
            (vec![c, h, w], vec![out_channels, ho, wo])
        };
        Conv2d {
            inp,
            out: [out_channels, ho, wo],
            kh: geo.kernel.0,
            kw: geo.kernel.1,
            stride: geo.stride,
            pad: geo.pad,
            dil: geo.dilation,
            groups: geo.groups,
            bias,
            one_d,
            in_shape,
            out_shape,
            gather: std::sync::OnceLock::new(),
        }
    }

    /// The index table of [`Conv2d::im2col`] (see the field `gather`).
    fn gather(&self) -> &[u32] {
        self.gather.get_or_init(|| {
            let [c, h, w] = self.inp;
            let (kh, kw) = (self.kh, self.kw);
            let [_, ho, wo] = self.out;
            let (stride, (pt, _, pl, _), (dh, dw)) = (self.stride, self.pad, self.dil);
            let p = ho * wo;
            let mut gather = vec![u32::MAX; self.k() * p];
            for ch in 0..c {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let j = (ch * kh + ky) * kw + kx;
                        for oy in 0..ho {
                            let iy = (oy * stride + ky * dh) as isize - pt as isize;
                            for ox in 0..wo {
                                let ix = (ox * stride + kx * dw) as isize - pl as isize;
                                if iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w {
                                    gather[j * p + oy * wo + ox] = (ch * h * w + iy as usize * w + ix as usize) as u32;
                                }
                            }
                        }
                    }
                }
            }
            gather
        })
    }
    fn k(&self) -> usize {
        self.inp[0] * self.kh * self.kw
    }
    fn p(&self) -> usize {
        self.out[1] * self.out[2]
    }
    /// Weights per output channel, `K/G = (C/G) k_h k_w`.
    fn kg(&self) -> usize {
        self.k() / self.groups
    }
    /// Output channels per group.
    fn og(&self) -> usize {
        self.out[0] / self.groups
    }
    fn nw(&self) -> usize {
        self.out[0] * self.kg()
    }
    /// `y (+)= W cols` per group (`y`: `O × P`, `W`: `O × K/G`, `cols`: `K × P`).
    fn mm_y(&self, w: &[f64], cols: &[f64], y: &mut [f64], acc: bool) {
        let (og, kg, p) = (self.og(), self.kg(), self.p());
        for g in 0..self.groups {
            gemm_nn(
                &mut y[g * og * p..(g + 1) * og * p],
                &w[g * og * kg..(g + 1) * og * kg],
                &cols[g * kg * p..(g + 1) * kg * p],
                og,
                p,
                kg,
                acc,
            );
        }
    }
    /// `gw (+)= Δ colsᵀ` per group (`gw`: `O × K/G`).
    fn mm_g(&self, gw: &mut [f64], dy: &[f64], cols: &[f64], acc: bool) {
        let (og, kg, p) = (self.og(), self.kg(), self.p());
        for g in 0..self.groups {
            gemm_nt(
                &mut gw[g * og * kg..(g + 1) * og * kg],
                &dy[g * og * p..(g + 1) * og * p],
                &cols[g * kg * p..(g + 1) * kg * p],
                og,
                kg,
                p,
                acc,
            );
        }
    }
    /// `dcols (+)= Wᵀ Δ` per group (`dcols`: `K × P`).
    fn mm_dcols(&self, dcols: &mut [f64], w: &[f64], dy: &[f64], acc: bool) {
        let (og, kg, p) = (self.og(), self.kg(), self.p());
        for g in 0..self.groups {
            gemm_tn(
                &mut dcols[g * kg * p..(g + 1) * kg * p],
                &w[g * og * kg..(g + 1) * og * kg],
                &dy[g * og * p..(g + 1) * og * p],
                kg,
                p,
                og,
                1.0,
                acc,
            );
        }
    }
    /// Unfolds one sample `x` into `cols` (`K × P`).
    fn im2col(&self, x: &[f64], cols: &mut [f64]) {
        for (c, &g) in cols.iter_mut().zip(self.gather()) {
            *c = if g == u32::MAX { 0.0 } else { x[g as usize] };
        }
    }
    /// Adds the folded `cols` (`K × P`) into one sample's `dx`.
    fn col2im(&self, cols: &[f64], dx: &mut [f64]) {
        for (c, &g) in cols.iter().zip(self.gather()) {
            if g != u32::MAX {
                dx[g as usize] += c;
            }
        }
    }
    /// `y = W cols (+ b)` for one sample (`O × P`).
    fn apply(&self, w: &[f64], cols: &[f64], y: &mut [f64], acc: bool) {
        self.mm_y(w, cols, y, acc);
    }
    fn add_bias(&self, bias: &[f64], y: &mut [f64]) {
        let p = self.p();
        for (row, b) in y.chunks_exact_mut(p).zip(bias) {
            row.iter_mut().for_each(|v| *v += b);
        }
    }
    /// The per-sample gradient of one sample into `g` (`[W | b]`), with `cols` scratch (`K × P`):
    /// `G = Δ · colsᵀ` (`Δ`: the sample's `dy`, `O × P`; `cols`: its unfolded input, `K × P`).
    fn sample_grad(&self, x: &[f64], dy: &[f64], g: &mut [f64], cols: &mut [f64]) {
        let (o, nw, p) = (self.out[0], self.nw(), self.p());
        self.im2col(x, cols);
        self.mm_g(&mut g[..nw], dy, cols, false);
        if self.bias {
            for ch in 0..o {
                g[nw + ch] = dy[ch * p..(ch + 1) * p].iter().sum();
            }
        }
    }
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        if self.one_d {
            "conv1d"
        } else {
            "conv2d"
        }
    }
    fn describe(&self) -> String {
        let (pt, pb, pl, pr) = self.pad;
        let mut s = if self.one_d {
            format!(
                "conv1d {:?} → {:?}, kernel {}, stride {}, padding {}",
                self.in_shape, self.out_shape, self.kw, self.stride, pl
            )
        } else {
            format!(
                "conv2d {:?} → {:?}, kernel {}×{}, stride {}, padding {}",
                self.inp, self.out, self.kh, self.kw, self.stride, pt
            )
        };
        if (pt, pl) != (pb, pr) || (!self.one_d && pt != pl) {
            s = format!("{s} (top {pt}, bottom {pb}, left {pl}, right {pr})");
        }
        if self.dil != (1, 1) {
            s = if self.one_d {
                format!("{s}, dilation {}", self.dil.1)
            } else {
                format!("{s}, dilation {}×{}", self.dil.0, self.dil.1)
            };
        }
        if self.groups != 1 {
            s = format!("{s}, {} groups", self.groups);
        }
        if self.bias {
            s.push_str(", bias");
        }
        s
    }
    fn in_shape(&self) -> &[usize] {
        &self.in_shape
    }
    fn out_shape(&self) -> &[usize] {
        &self.out_shape
    }
    fn blocks(&self) -> Vec<BlockSpec> {
        let (o, kg, cg) = (self.out[0], self.kg(), self.inp[0] / self.groups);
        let shape = if self.one_d {
            vec![o, cg, self.kw]
        } else {
            vec![o, cg, self.kh, self.kw]
        };
        // PyTorch's fans: fan_in = (C/G) k_h k_w, fan_out = O k_h k_w.
        let mut v = vec![BlockSpec {
            name: "weight".into(),
            shape,
            init: BlockInit::Weight {
                fan_in: kg,
                fan_out: o * self.kh * self.kw,
            },
        }];
        if self.bias {
            v.push(BlockSpec {
                name: "bias".into(),
                shape: vec![o],
                init: BlockInit::Zeros,
            });
        }
        v
    }
    fn n_params(&self) -> usize {
        self.nw() + if self.bias { self.out[0] } else { 0 }
    }
    /// Two unfolded inputs (`K × P` each) and the statistics' per-sample gradient.
    fn scratch_len(&self, _b: usize) -> usize {
        2 * self.k() * self.p() + self.n_params()
    }
    fn units(&self) -> Option<Units> {
        let (o, k, p) = (self.out[0], self.kg(), self.p());
        Some(Units {
            noun: "channel",
            params: (0..o)
                .map(|c| {
                    let mut v: Vec<usize> = (c * k..(c + 1) * k).collect();
                    if self.bias {
                        v.push(o * k + c);
                    }
                    v
                })
                .collect(),
            positions: (0..o).map(|c| (c * p..(c + 1) * p).collect()).collect(),
        })
    }
    fn pass(&self, positions: &[usize]) -> Pass {
        let hw = self.inp[1] * self.inp[2];
        // Whole input channels only (the output positions of `whole_channels` are not needed).
        if whole_channels(positions, self.inp, self.inp).is_none() {
            return Pass::Block;
        }
        let mut chans: Vec<usize> = positions.iter().map(|p| p / hw).collect();
        chans.sort_unstable();
        chans.dedup();
        // Input channel c (group c / (C/G), column c mod C/G) is read by that group's outputs.
        let (kg, kk, cg, og) = (self.kg(), self.kh * self.kw, self.inp[0] / self.groups, self.og());
        Pass::Absorb(
            chans
                .iter()
                .flat_map(|&c| {
                    let (g, cc) = (c / cg, c % cg);
                    (g * og..(g + 1) * og).flat_map(move |o| o * kg + cc * kk..o * kg + (cc + 1) * kk)
                })
                .collect(),
        )
    }

    fn forward(&self, p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, scratch: &mut [f64]) {
        let (din, dout, o, nw) = (self.in_dim(), self.out_dim(), self.out[0], self.nw());
        let cols = &mut scratch[..self.k() * self.p()];
        for i in 0..b {
            let yi = &mut y[i * dout..(i + 1) * dout];
            self.im2col(&x[i * din..(i + 1) * din], cols);
            self.apply(&p[..nw], cols, yi, false);
            if self.bias {
                self.add_bias(&p[nw..nw + o], yi);
            }
        }
    }

    fn backward(
        &self,
        p: &[f64],
        f: Fwd<'_>,
        dy: &[f64],
        dx: Option<&mut [f64]>,
        grad: Option<&mut [f64]>,
        alpha: f64,
        b: usize,
        scratch: &mut [f64],
    ) {
        let (din, dout, o, k, np, nw) = (
            self.in_dim(),
            self.out_dim(),
            self.out[0],
            self.k(),
            self.p(),
            self.nw(),
        );
        let (cols, rest) = scratch.split_at_mut(k * np);
        let dcols = &mut rest[..k * np];
        let mut grad = grad;
        let mut dx = dx;
        if let Some(g) = grad.as_deref_mut() {
            g.fill(0.0);
        }
        for i in 0..b {
            let dyi = &dy[i * dout..(i + 1) * dout];
            if let Some(g) = grad.as_deref_mut() {
                self.im2col(&f.x[i * din..(i + 1) * din], cols);
                self.mm_g(&mut g[..nw], dyi, cols, true);
                if self.bias {
                    for ch in 0..o {
                        g[nw + ch] += dyi[ch * np..(ch + 1) * np].iter().sum::<f64>();
                    }
                }
            }
            if let Some(d) = dx.as_deref_mut() {
                let dxi = &mut d[i * din..(i + 1) * din];
                dxi.fill(0.0);
                self.mm_dcols(dcols, &p[..nw], dyi, false);
                self.col2im(dcols, dxi);
            }
        }
        if let Some(g) = grad {
            g.iter_mut().for_each(|v| *v *= alpha);
        }
    }

    fn grad_sq(&self, _p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, sm: &mut [f64], scratch: &mut [f64]) {
        let (din, dout) = (self.in_dim(), self.out_dim());
        let (cols, rest) = scratch.split_at_mut(self.k() * self.p());
        let g = &mut rest[self.k() * self.p()..self.k() * self.p() + self.n_params()];
        for i in 0..b {
            self.sample_grad(&f.x[i * din..(i + 1) * din], &dy[i * dout..(i + 1) * dout], g, cols);
            for (s, v) in sm.iter_mut().zip(g.iter()) {
                *s += v * v;
            }
        }
    }

    fn grad_quad(&self, _p: &[f64], f: Fwd<'_>, dy: &[f64], b: usize, d: &[f64], q: &mut [f64], scratch: &mut [f64]) {
        let (din, dout) = (self.in_dim(), self.out_dim());
        let (cols, rest) = scratch.split_at_mut(self.k() * self.p());
        let g = &mut rest[self.k() * self.p()..self.k() * self.p() + self.n_params()];
        for (i, qi) in q.iter_mut().enumerate().take(b) {
            self.sample_grad(&f.x[i * din..(i + 1) * din], &dy[i * dout..(i + 1) * dout], g, cols);
            *qi += g.iter().zip(d).map(|(v, e)| v * v * e).sum::<f64>();
        }
    }

    fn rforward(
        &self,
        p: &[f64],
        v: &[f64],
        f: Fwd<'_>,
        rx: Option<&[f64]>,
        ry: &mut [f64],
        b: usize,
        scratch: &mut [f64],
    ) {
        let (din, dout, o, nw) = (self.in_dim(), self.out_dim(), self.out[0], self.nw());
        let cols = &mut scratch[..self.k() * self.p()];
        for i in 0..b {
            let ryi = &mut ry[i * dout..(i + 1) * dout];
            self.im2col(&f.x[i * din..(i + 1) * din], cols);
            self.apply(&v[..nw], cols, ryi, false);
            if let Some(rx) = rx {
                self.im2col(&rx[i * din..(i + 1) * din], cols);
                self.apply(&p[..nw], cols, ryi, true);
            }
            if self.bias {
                self.add_bias(&v[nw..nw + o], ryi);
            }
        }
    }

    fn rbackward(
        &self,
        p: &[f64],
        v: &[f64],
        r: RFwd<'_>,
        rdy: &[f64],
        rdx: Option<&mut [f64]>,
        hv: &mut [f64],
        alpha: f64,
        b: usize,
        scratch: &mut [f64],
    ) {
        let (din, dout, o, k, np, nw) = (
            self.in_dim(),
            self.out_dim(),
            self.out[0],
            self.k(),
            self.p(),
            self.nw(),
        );
        let (cols, rest) = scratch.split_at_mut(k * np);
        let (dcols, rest) = rest.split_at_mut(k * np);
        let gw = &mut rest[..nw];
        let mut rdx = rdx;
        for i in 0..b {
            let (rdyi, dyi) = (&rdy[i * dout..(i + 1) * dout], &r.dy[i * dout..(i + 1) * dout]);
            // Hv_W += α (R{Δ} Xᵀ + Δ R{X}ᵀ), Hv_b += α Σ R{Δ}.
            self.im2col(&r.f.x[i * din..(i + 1) * din], cols);
            self.mm_g(gw, rdyi, cols, false);
            if let Some(rx) = r.rx {
                self.im2col(&rx[i * din..(i + 1) * din], cols);
                self.mm_g(gw, dyi, cols, true);
            }
            for (h, g) in hv[..nw].iter_mut().zip(gw.iter()) {
                *h += alpha * g;
            }
            if self.bias {
                for ch in 0..o {
                    hv[nw + ch] += alpha * rdyi[ch * np..(ch + 1) * np].iter().sum::<f64>();
                }
            }
            // R{dx} = col2im(Wᵀ R{Δ} + Vᵀ Δ).
            if let Some(d) = rdx.as_deref_mut() {
                let di = &mut d[i * din..(i + 1) * din];
                di.fill(0.0);
                self.mm_dcols(dcols, &p[..nw], rdyi, false);
                self.mm_dcols(dcols, &v[..nw], dyi, true);
                self.col2im(dcols, di);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::{fd_check, LayerConfig};
    use crate::core::rng::Rng;

    fn normal(n: usize, seed: u64) -> Vec<f64> {
        let mut v = vec![0.0; n];
        Rng::new(seed).fill_normal(&mut v);
        v
    }

    /// One case: `(input [C, H, W], out_channels, (k_h, k_w), stride, padding, (d_h, d_w), groups,
    /// bias, conv1d)`.
    type Case = (
        [usize; 3],
        usize,
        (usize, usize),
        usize,
        Padding,
        (usize, usize),
        usize,
        bool,
        bool,
    );

    fn cases() -> Vec<Case> {
        let same = Padding::Mode(PaddingMode::Same);
        vec![
            ([4, 5, 6], 6, (3, 3), 1, Padding::All(1), (1, 1), 2, true, false),
            ([3, 5, 5], 3, (3, 2), 1, same.clone(), (1, 1), 3, false, false), // depthwise, even kernel
            ([2, 7, 6], 4, (3, 3), 2, Padding::Pair([2, 1]), (2, 1), 1, true, false),
            ([2, 6, 6], 2, (2, 3), 1, same.clone(), (2, 2), 1, true, false),
            ([4, 1, 9], 4, (1, 3), 1, same.clone(), (1, 2), 4, true, true), // conv1d depthwise
            ([4, 1, 9], 2, (1, 4), 2, Padding::All(1), (1, 1), 2, false, true),
            ([2, 1, 8], 3, (1, 2), 1, same, (1, 3), 1, true, true),
        ]
    }

    fn build(c: &Case) -> Arc<dyn Layer> {
        let (inp, o, k, s, pad, d, g, bias, one_d) = c.clone();
        let cfg: LayerConfig = if one_d {
            Conv1dConfig {
                out_channels: o,
                kernel: k.1,
                stride: s,
                padding: pad,
                dilation: d.1,
                groups: g,
                bias,
            }
            .into()
        } else {
            Conv2dConfig {
                out_channels: o,
                kernel: KernelSpec::Rect([k.0, k.1]),
                stride: s,
                padding: pad,
                dilation: KernelSpec::Rect([d.0, d.1]),
                groups: g,
                bias,
            }
            .into()
        };
        let shape: Vec<usize> = if one_d { vec![inp[0], inp[2]] } else { inp.to_vec() };
        cfg.build(&shape, "model.layers[0]").unwrap()
    }

    /// PyTorch's definition written out: `y[o, i, j] = b_o + Σ_{c, u, v} W[o, c, u, v] ·
    /// x[g·C/G + c, i·s + u·d_h − p_top, j·s + v·d_w − p_left]` (zero outside), `g = o/(O/G)`,
    /// with "same" padding `d(k − 1)` split as `⌊·/2⌋` before and the rest after.
    fn naive(c: &Case, p: &[f64], x: &[f64]) -> (Vec<f64>, [usize; 2]) {
        let (inp, o, (kh, kw), s, pad, (dh, dw), g, bias, _) = c.clone();
        let [ci, h, w] = inp;
        let (pt, pb, pl, pr) = match pad {
            Padding::All(q) => (q, q, q, q),
            Padding::Pair([a, b]) => (a, a, b, b),
            Padding::Mode(PaddingMode::Valid) => (0, 0, 0, 0),
            Padding::Mode(PaddingMode::Same) => {
                let (th, tw) = (dh * (kh - 1), dw * (kw - 1));
                (th / 2, th - th / 2, tw / 2, tw - tw / 2)
            }
        };
        let (pt, pb) = if h == 1 { (0, 0) } else { (pt, pb) };
        let ho = (h + pt + pb - dh * (kh - 1) - 1) / s + 1;
        let wo = (w + pl + pr - dw * (kw - 1) - 1) / s + 1;
        let (cg, og) = (ci / g, o / g);
        let mut y = vec![0.0; o * ho * wo];
        for oc in 0..o {
            let grp = oc / og;
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = if bias { p[o * cg * kh * kw + oc] } else { 0.0 };
                    for cc in 0..cg {
                        for u in 0..kh {
                            for v in 0..kw {
                                let (iy, ix) = (
                                    (i * s + u * dh) as isize - pt as isize,
                                    (j * s + v * dw) as isize - pl as isize,
                                );
                                if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                    continue;
                                }
                                let xv = x[((grp * cg + cc) * h + iy as usize) * w + ix as usize];
                                acc += p[((oc * cg + cc) * kh + u) * kw + v] * xv;
                            }
                        }
                    }
                    y[(oc * ho + i) * wo + j] = acc;
                }
            }
        }
        (y, [ho, wo])
    }

    #[test]
    fn forward_matches_pytorchs_definition_with_groups_dilation_and_same_padding() {
        for (n, c) in cases().iter().enumerate() {
            let l = build(c);
            let (p, x) = (normal(l.n_params(), 1 + n as u64), normal(l.in_dim(), 50 + n as u64));
            let (e, [ho, wo]) = naive(c, &p, &x);
            let expect_out: Vec<usize> = if c.8 { vec![c.1, wo] } else { vec![c.1, ho, wo] };
            assert_eq!(l.out_shape(), &expect_out[..], "case {n}");
            let mut y = vec![0.0; l.out_dim()];
            l.forward(&p, &x, &mut y, &mut [], 1, &mut vec![0.0; l.scratch_len(1)]);
            for (k, (a, e)) in y.iter().zip(&e).enumerate() {
                // Sums of at most 40 products of values of order 1 in another order.
                assert!((a - e).abs() <= 1e-13 * (1.0 + e.abs()), "case {n} [{k}]: {a} vs {e}");
            }
            if matches!(c.4, Padding::Mode(PaddingMode::Same)) {
                assert_eq!(
                    l.out_shape(),
                    l.in_shape()
                        .iter()
                        .enumerate()
                        .map(|(i, v)| if i == 0 { c.1 } else { *v })
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    /// Bilinear in `(θ, x)`: central differences are exact to rounding (`ε |y| / h ≈ 1e-12` with
    /// `h = 1e-4`): checked to 1e-8.
    #[test]
    fn backward_r_operator_and_statistics_match_differences_and_a_per_sample_loop() {
        for (n, c) in cases().iter().enumerate() {
            let l = build(c);
            let b = 2;
            let (p, x) = (
                normal(l.n_params(), 7 + n as u64),
                normal(b * l.in_dim(), 70 + n as u64),
            );
            fd_check::check(&*l, &p, &x, b, 1e-4, 1e-8);
        }
    }

    /// A rescaled input channel is absorbed exactly by the weights `pass` names (its group's
    /// filters' taps on it), whatever the groups.
    #[test]
    fn a_rescaled_input_channel_is_absorbed_by_its_groups_weights() {
        for (n, c) in cases().iter().enumerate() {
            let l = build(c);
            let (p, x) = (normal(l.n_params(), 3), normal(l.in_dim(), 4));
            let hw = c.0[1] * c.0[2];
            let ch = c.0[0] - 1;
            let Pass::Absorb(ws) = l.pass(&(ch * hw..(ch + 1) * hw).collect::<Vec<_>>()) else {
                panic!("case {n}: not absorbed")
            };
            let (mut xs, mut ps) = (x.clone(), p.clone());
            xs[ch * hw..(ch + 1) * hw].iter_mut().for_each(|v| *v *= 4.0);
            ws.iter().for_each(|&j| ps[j] /= 4.0);
            let run = |p: &[f64], x: &[f64]| {
                let mut y = vec![0.0; l.out_dim()];
                l.forward(p, x, &mut y, &mut [], 1, &mut vec![0.0; l.scratch_len(1)]);
                y
            };
            let (y, ys) = (run(&p, &x), run(&ps, &xs));
            for (a, e) in ys.iter().zip(&y) {
                // Multiplying by 4 and dividing by 4 are exact: equal to the last bit of the sums.
                assert!((a - e).abs() <= 1e-14 * (1.0 + e.abs()), "case {n}: {a} vs {e}");
            }
            // Each filter of the group reads the channel at k_h k_w taps.
            assert_eq!(ws.len(), (c.1 / c.6) * c.2 .0 * c.2 .1, "case {n}");
        }
    }

    #[test]
    fn the_spec_tables_parse_and_bad_values_are_refused_naming_the_field() {
        let c: LayerConfig = toml::from_str(
            "type = \"conv2d\"\nout_channels = 4\nkernel = 3\npadding = \"same\"\ndilation = [2, 1]\ngroups = 2",
        )
        .unwrap();
        let LayerConfig::Conv2d(c2) = &c else { panic!() };
        assert_eq!(c2.padding, Padding::Mode(PaddingMode::Same));
        assert_eq!(c2.dilation, KernelSpec::Rect([2, 1]));
        let c: LayerConfig = toml::from_str("type = \"conv1d\"\nout_channels = 4\nkernel = 3").unwrap();
        assert_eq!(
            c,
            LayerConfig::Conv1d(Conv1dConfig {
                out_channels: 4,
                kernel: 3,
                stride: 1,
                padding: Padding::All(0),
                dilation: 1,
                groups: 1,
                bias: true
            })
        );
        let c: LayerConfig =
            toml::from_str("type = \"conv2d\"\nout_channels = 4\nkernel = 3\npadding = [1, 2]").unwrap();
        assert!(matches!(
            c,
            LayerConfig::Conv2d(Conv2dConfig {
                padding: Padding::Pair([1, 2]),
                ..
            })
        ));
        let e =
            toml::from_str::<LayerConfig>("type = \"conv1d\"\nout_channels = 4\nkernel = 3\npadding_mode = \"zeros\"")
                .unwrap_err();
        assert!(e.to_string().contains("unknown field `padding_mode`"), "{e}");
        let refuse = |t: &str, shape: &[usize]| {
            toml::from_str::<LayerConfig>(t)
                .unwrap()
                .build(shape, "model.layers[3]")
                .unwrap_err()
                .to_string()
        };
        let e = refuse(
            "type = \"conv2d\"\nout_channels = 4\nkernel = 3\ngroups = 3",
            &[3, 5, 5],
        );
        assert!(e.contains("model.layers[3].groups: 3 must divide"), "{e}");
        let e = refuse(
            "type = \"conv2d\"\nout_channels = 4\nkernel = 3\nstride = 2\npadding = \"same\"",
            &[3, 5, 5],
        );
        assert!(e.contains("model.layers[3].padding: \"same\" needs stride 1"), "{e}");
        let e = refuse(
            "type = \"conv1d\"\nout_channels = 4\nkernel = 3\npadding = [1, 1]",
            &[3, 5],
        );
        assert!(e.contains("model.layers[3].padding: conv1d takes one size"), "{e}");
        let e = refuse("type = \"conv1d\"\nout_channels = 4\nkernel = 3\ndilation = 3", &[3, 6]);
        assert!(
            e.contains("model.layers[3].kernel: 1×3 (dilated: 1×7) is larger"),
            "{e}"
        );
        let e = refuse("type = \"conv1d\"\nout_channels = 4\nkernel = 3\ndilation = 0", &[3, 6]);
        assert!(e.contains("model.layers[3].dilation: must be ≥ 1"), "{e}");
        let e = refuse("type = \"conv1d\"\nout_channels = 4\nkernel = 3", &[3, 6, 6]);
        assert!(
            e.contains("model.layers[3]: conv1d needs inputs of shape [C, L]"),
            "{e}"
        );
    }
}
