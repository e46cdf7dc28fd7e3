//! Exponential symmetries: generators, Noether charges, the catalog, discovery, the law of motion.
