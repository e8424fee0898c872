"""Pure numpy/scipy core: arrays in, arrays out; no files, no environment, no clusters."""
