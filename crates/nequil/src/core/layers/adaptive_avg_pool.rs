//! `adaptive-avg-pool2d` and `adaptive-avg-pool1d`: the mean over windows chosen so that the
//! output has a given size (PyTorch `nn.AdaptiveAvgPool2d(output_size)`, `nn.AdaptiveAvgPool1d`),
//! `[C, H, W] → [C, H_o, W_o]` and `[C, L] → [C, L_o]`. Output row `i` averages input rows
//! `⌊i H / H_o⌋ ≤ y < ⌈(i + 1) H / H_o⌉` (PyTorch's start and end indices; windows may differ in
//! size and overlap when `H_o` does not divide `H`), and the same along the width. No parameters;
//! a linear map, so its R-operator is itself. Channel rescalings pass through.

use super::max_pool2d::whole_channels;
use super::{checked_size, chw, BlockSpec, BuildLayer, Fwd, KernelSpec, Layer, Pass, RFwd};
use crate::{invalid, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `{ type = "adaptive-avg-pool2d", output_size }`: `nn.AdaptiveAvgPool2d(output_size)` on
/// `[C, H, W]`; `output_size` is `s` or `[s_h, s_w]` (each ≥ 1).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveAvgPool2dConfig {
    /// The output's height and width.
    pub output_size: KernelSpec,
}

/// `{ type = "adaptive-avg-pool1d", output_size }`: `nn.AdaptiveAvgPool1d(output_size)` on
/// `[C, L]` (`output_size` ≥ 1).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveAvgPool1dConfig {
    /// The output's length.
    pub output_size: usize,
}

fn check_sizes(key: &str, c: usize, (ho, wo): (usize, usize)) -> Result<()> {
    if ho == 0 || wo == 0 {
        return Err(invalid!("{key}.output_size: must be ≥ 1"));
    }
    checked_size(key, "the output", &[c, ho, wo]).map(|_| ())
}

impl BuildLayer for AdaptiveAvgPool2dConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let chw = chw(key, "adaptive-avg-pool2d", inp)?;
        let out = self.output_size.pair();
        check_sizes(key, chw[0], out)?;
        Ok(Arc::new(AdaptiveAvgPool::new(chw, out, false)))
    }
}

impl BuildLayer for AdaptiveAvgPool1dConfig {
    fn build(&self, inp: &[usize], key: &str) -> Result<Arc<dyn Layer>> {
        let [c, l] = match inp {
            [c, l] => [*c, *l],
            _ => {
                return Err(invalid!(
                    "{key}: adaptive-avg-pool1d needs inputs of shape [C, L], got {inp:?}"
                ))
            }
        };
        check_sizes(key, c, (1, self.output_size))?;
        Ok(Arc::new(AdaptiveAvgPool::new([c, 1, l], (1, self.output_size), true)))
    }
}

/// PyTorch's window `[⌊i n / m⌋, ⌈(i + 1) n / m⌉)` of output index `i` (of `m`) over `n` inputs.
/// In 128 bits: `i · n` may exceed 64 bits for sizes below [`super::MAX_VALUES`].
fn window(i: usize, n: usize, m: usize) -> (usize, usize) {
    let (i, n, m) = (i as u128, n as u128, m as u128);
    (((i * n) / m) as usize, ((i + 1) * n).div_ceil(m) as usize)
}

/// Adaptive average pooling (see the module docs); a 1-D one runs on `[C, 1, L]`.
#[derive(Clone, Debug)]
pub struct AdaptiveAvgPool {
    inp: [usize; 3],
    out: [usize; 3],
    one_d: bool,
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
}

impl AdaptiveAvgPool {
    /// Pools `[c, h, w]` inputs to `[c, out.0, out.1]` (sizes ≥ 1); `one_d` shows the shapes
    /// without the height (1).
    pub fn new(inp: [usize; 3], out: (usize, usize), one_d: bool) -> Self {
        let [c, h, w] = inp;
        let (in_shape, out_shape) = if one_d {
            (vec![c, w], vec![c, out.1])
        } else {
            (vec![c, h, w], vec![c, out.0, out.1])
        };
        AdaptiveAvgPool {
            inp,
            out: [c, out.0, out.1],
            one_d,
            in_shape,
            out_shape,
        }
    }
    fn apply(&self, x: &[f64], y: &mut [f64], b: usize) {
        let [c, h, w] = self.inp;
        let [_, ho, wo] = self.out;
        let (din, dout) = (c * h * w, c * ho * wo);
        for i in 0..b {
            for ch in 0..c {
                for oy in 0..ho {
                    let (y0, y1) = window(oy, h, ho);
                    for ox in 0..wo {
                        let (x0, x1) = window(ox, w, wo);
                        let mut s = 0.0;
                        for iy in y0..y1 {
                            let row = i * din + (ch * h + iy) * w;
                            s += x[row + x0..row + x1].iter().sum::<f64>();
                        }
                        y[i * dout + (ch * ho + oy) * wo + ox] = s / ((y1 - y0) * (x1 - x0)) as f64;
                    }
                }
            }
        }
    }
    fn spread(&self, dy: &[f64], dx: &mut [f64], b: usize) {
        dx[..b * self.in_dim()].fill(0.0);
        let [c, h, w] = self.inp;
        let [_, ho, wo] = self.out;
        let (din, dout) = (c * h * w, c * ho * wo);
        for i in 0..b {
            for ch in 0..c {
                for oy in 0..ho {
                    let (y0, y1) = window(oy, h, ho);
                    for ox in 0..wo {
                        let (x0, x1) = window(ox, w, wo);
                        let g = dy[i * dout + (ch * ho + oy) * wo + ox] / ((y1 - y0) * (x1 - x0)) as f64;
                        for iy in y0..y1 {
                            let row = i * din + (ch * h + iy) * w;
                            dx[row + x0..row + x1].iter_mut().for_each(|v| *v += g);
                        }
                    }
                }
            }
        }
    }
}

impl Layer for AdaptiveAvgPool {
    fn kind(&self) -> &'static str {
        if self.one_d {
            "adaptive-avg-pool1d"
        } else {
            "adaptive-avg-pool2d"
        }
    }
    fn describe(&self) -> String {
        format!("{} {:?} → {:?}", self.kind(), self.in_shape, self.out_shape)
    }
    fn in_shape(&self) -> &[usize] {
        &self.in_shape
    }
    fn out_shape(&self) -> &[usize] {
        &self.out_shape
    }
    fn blocks(&self) -> Vec<BlockSpec> {
        Vec::new()
    }
    fn n_params(&self) -> usize {
        0
    }
    fn pass(&self, positions: &[usize]) -> Pass {
        match whole_channels(positions, self.inp, self.out) {
            Some(p) => Pass::Through(p),
            None => Pass::Block,
        }
    }
    fn forward(&self, _p: &[f64], x: &[f64], y: &mut [f64], _saved: &mut [f64], b: usize, _scratch: &mut [f64]) {
        self.apply(x, y, b);
    }
    fn backward(
        &self,
        _p: &[f64],
        _f: Fwd<'_>,
        dy: &[f64],
        dx: Option<&mut [f64]>,
        _grad: Option<&mut [f64]>,
        _alpha: f64,
        b: usize,
        _scratch: &mut [f64],
    ) {
        if let Some(dx) = dx {
            self.spread(dy, dx, b);
        }
    }
    fn grad_sq(&self, _p: &[f64], _f: Fwd<'_>, _dy: &[f64], _b: usize, _sm: &mut [f64], _s: &mut [f64]) {}
    fn grad_quad(&self, _p: &[f64], _f: Fwd<'_>, _dy: &[f64], _b: usize, _d: &[f64], _q: &mut [f64], _s: &mut [f64]) {}
    fn rforward(
        &self,
        _p: &[f64],
        _v: &[f64],
        _f: Fwd<'_>,
        rx: Option<&[f64]>,
        ry: &mut [f64],
        b: usize,
        _s: &mut [f64],
    ) {
        match rx {
            Some(rx) => self.apply(rx, ry, b),
            None => ry[..b * self.out_dim()].fill(0.0),
        }
    }
    fn rbackward(
        &self,
        _p: &[f64],
        _v: &[f64],
        _r: RFwd<'_>,
        rdy: &[f64],
        rdx: Option<&mut [f64]>,
        _hv: &mut [f64],
        _alpha: f64,
        b: usize,
        _s: &mut [f64],
    ) {
        if let Some(rdx) = rdx {
            self.spread(rdy, rdx, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::layers::{fd_check, LayerConfig};
    use crate::core::rng::Rng;

    #[test]
    fn windows_are_pytorchs_start_and_end_indices() {
        // Sizes whose products exceed 64 bits.
        assert_eq!(window((1 << 40) - 1, 1 << 40, 1 << 40), ((1 << 40) - 1, 1 << 40));
        // 5 → 3: [0, 2), [1, 4), [3, 5) (overlapping); 6 → 3: [0, 2), [2, 4), [4, 6); 2 → 3:
        // [0, 1), [0, 2), [1, 2) (larger output than input).
        assert_eq!(
            (0..3).map(|i| window(i, 5, 3)).collect::<Vec<_>>(),
            [(0, 2), (1, 4), (3, 5)]
        );
        assert_eq!(
            (0..3).map(|i| window(i, 6, 3)).collect::<Vec<_>>(),
            [(0, 2), (2, 4), (4, 6)]
        );
        assert_eq!(
            (0..3).map(|i| window(i, 2, 3)).collect::<Vec<_>>(),
            [(0, 1), (0, 2), (1, 2)]
        );
    }

    /// Forward on `[1, 5, 4]` → `[1, 3, 2]` against the means written out from the windows above,
    /// and 1-D `[2, 5]` → `[2, 3]`.
    #[test]
    fn forward_is_the_mean_over_pytorchs_windows() {
        let x: Vec<f64> = (0..20).map(|v| (v * v) as f64 * 0.5 - 3.0).collect();
        let l = LayerConfig::from(AdaptiveAvgPool2dConfig {
            output_size: KernelSpec::Rect([3, 2]),
        })
        .build(&[1, 5, 4], "k")
        .unwrap();
        assert_eq!(l.out_shape(), &[1, 3, 2]);
        let mut y = vec![0.0; 6];
        l.forward(&[], &x, &mut y, &mut [], 1, &mut []);
        let rows = [(0, 2), (1, 4), (3, 5)];
        let cols = [(0, 2), (2, 4)];
        for (oy, (y0, y1)) in rows.iter().enumerate() {
            for (ox, (x0, x1)) in cols.iter().enumerate() {
                let xr = &x;
                let vals: Vec<f64> = (*y0..*y1)
                    .flat_map(|r| (*x0..*x1).map(move |c| xr[r * 4 + c]))
                    .collect();
                let e = vals.iter().sum::<f64>() / vals.len() as f64;
                // A mean of at most 6 values of order 100.
                assert!((y[oy * 2 + ox] - e).abs() <= 1e-13 * e.abs().max(1.0), "{oy},{ox}");
            }
        }
        let l = LayerConfig::from(AdaptiveAvgPool1dConfig { output_size: 3 })
            .build(&[2, 5], "k")
            .unwrap();
        assert_eq!(l.out_shape(), &[2, 3]);
        let mut y = vec![0.0; 6];
        l.forward(&[], &x[..10], &mut y, &mut [], 1, &mut []);
        for ch in 0..2 {
            for (o, (a, b)) in rows.iter().enumerate() {
                let e = x[ch * 5 + a..ch * 5 + b].iter().sum::<f64>() / (b - a) as f64;
                assert!((y[ch * 3 + o] - e).abs() <= 1e-13 * e.abs().max(1.0));
            }
        }
    }

    /// Linear: central differences are exact to rounding (`h = 1e-4`): checked to 1e-8.
    #[test]
    fn backward_and_r_operator_match_differences() {
        for (cfg, shape) in [
            (
                LayerConfig::from(AdaptiveAvgPool2dConfig {
                    output_size: KernelSpec::Rect([3, 4]),
                }),
                vec![2, 5, 3],
            ),
            (
                LayerConfig::from(AdaptiveAvgPool1dConfig { output_size: 4 }),
                vec![3, 7],
            ),
        ] {
            let l = cfg.build(&shape, "k").unwrap();
            let mut x = vec![0.0; 2 * l.in_dim()];
            Rng::new(5).fill_normal(&mut x);
            fd_check::check(&*l, &[], &x, 2, 1e-4, 1e-8);
        }
    }

    #[test]
    fn whole_channels_pass_and_bad_sizes_are_refused() {
        let l = LayerConfig::from(AdaptiveAvgPool2dConfig {
            output_size: KernelSpec::Square(1),
        })
        .build(&[3, 2, 2], "k")
        .unwrap();
        assert_eq!(l.pass(&[4, 5, 6, 7]), Pass::Through(vec![1]));
        assert_eq!(l.pass(&[4, 5]), Pass::Block);
        let c: LayerConfig = toml::from_str("type = \"adaptive-avg-pool2d\"\noutput_size = [2, 3]").unwrap();
        assert_eq!(
            c,
            LayerConfig::from(AdaptiveAvgPool2dConfig {
                output_size: KernelSpec::Rect([2, 3])
            })
        );
        let e = LayerConfig::from(AdaptiveAvgPool1dConfig { output_size: 0 })
            .build(&[2, 4], "model.layers[4]")
            .unwrap_err();
        assert!(
            e.to_string().contains("model.layers[4].output_size: must be ≥ 1"),
            "{e}"
        );
        let e = LayerConfig::from(AdaptiveAvgPool1dConfig { output_size: 2 })
            .build(&[2, 4, 4], "model.layers[4]")
            .unwrap_err();
        assert!(
            e.to_string().contains("model.layers[4]: adaptive-avg-pool1d needs"),
            "{e}"
        );
        let e =
            toml::from_str::<LayerConfig>("type = \"adaptive-avg-pool1d\"\noutput_size = 2\nkernel = 1").unwrap_err();
        assert!(e.to_string().contains("unknown field `kernel`"), "{e}");
    }
}
