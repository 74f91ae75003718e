//! Files the trainer reads and writes: checkpoints, image grids, plots.
