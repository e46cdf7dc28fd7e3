//! The paper's figures as experiments: each runs simulations, compares them with the theory, and
//! returns checks, a figure description and logs. The `nequil reproduce` command runs them and
//! renders the report.

pub mod figure;

pub use figure::{Figure, Panel, PanelKind, Role, Series, Style};
