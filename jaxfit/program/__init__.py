"""The pure training program: a chunk of configs, trained by one jitted, vmapped function of
(config arrays, keys, data) -> (carried state, per-epoch metrics). Nothing here touches devices,
files or the host loop (jaxfit.engine does).

`train`: the built-in network's program (`ProgramSpec` is its static structure, `make_segment`
builds the function, `spec_of` a config's spec, `effective_batch`, `num_outputs`, `keys`).
`graph`: a user's flax.nnx module inside the program (`split_for_program`, `apply_graph`, and the
`program_inputs` block that hands jaxfit.flax's layers the step's mode, key, rate and row mask).
"""
