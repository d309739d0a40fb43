//! Recording: `serve --record FILE` writes every answered call as a trace line.
