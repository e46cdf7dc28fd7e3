//! Curvature instruments: exact Hessian-vector products, dense Hessian, trace, top eigenvalues.
