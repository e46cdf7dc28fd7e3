//! The scalar `uw` model, `ℓ = (u w x − y)²` (book `theory/closed-forms.md#scalar-uw`): the charge of the rescaling
//! symmetry decays exponentially, `C(t) ∝ exp(−4(γ + (η/S) Var[r x]) t)` with `r = uwx − y` and
//! `t = η·steps`. `r x` depends on θ only through the product `p = uw`, so the rate is constant on
//! the orbit. (Either sign convention, `u² − w²` or `w² − u²`, decays at the same rate.)

/// The decay rate `4(γ + (η/S) Var[r x])` per unit time `t = η·steps`.
pub fn scalar_uw_decay_rate(gamma: f64, eta: f64, batch: usize, var_rx: f64) -> f64 {
    4.0 * (gamma + eta / batch as f64 * var_rx)
}

/// `Var[r x]` for Gaussian data `x ~ N(0, σ_x²)`, `y = v x + ε`, `ε ~ N(0, σ_ε²)` independent, at the
/// product `p = uw`: with `r x = (p − v)x² − εx`, `E[rx] = (p − v)σ_x²` and
/// `E[(rx)²] = 3(p − v)²σ_x⁴ + σ_ε²σ_x²`, so `Var[r x] = 2(p − v)²σ_x⁴ + σ_ε²σ_x²`.
pub fn scalar_uw_var_rx(p: f64, v: f64, var_x: f64, var_eps: f64) -> f64 {
    2.0 * (p - v).powi(2) * var_x * var_x + var_eps * var_x
}

/// `E[(r x)²] = 3(p − v)²σ_x⁴ + σ_ε²σ_x²`, the raw second moment that enters the exact discrete
/// drift `E[ΔC] = C((1 − 2ηγ)² − 1 − 4η² E[(rx)²])` of a batch of one.
pub fn scalar_uw_second_moment_rx(p: f64, v: f64, var_x: f64, var_eps: f64) -> f64 {
    3.0 * (p - v).powi(2) * var_x * var_x + var_eps * var_x
}
