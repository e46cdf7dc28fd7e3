//! The noise equilibrium: the 1-D monotone solve along an orbit, and closed forms for linear nets.
