"""srlab: config-driven training of single-image super-resolution models.

Each folder is one role; `docs/architecture.md` has the map. An import only points down
this list (`tests/test_layout.py` checks it):

    cli          the console scripts (srlab-train, -eval, -upscale, -export, -compare, -prepare)
    approaches   LightningModules: how a model learns (regression, gan, vae)
    training     what a run is made of besides the module: callbacks, EMA, NaN guard, speed, faults
    inference    nets from checkpoints and exported files, tiling, image writers, ONNX
    evaluation   paper-convention metrics, eval reports, LPIPS, sample diversity
    nets, data   nn.Modules that map LR to SR; HR sources, patches, degradations, the datamodule
    losses       one term per file and the weighted mix
    config       composing configs and checking them before anything is built
    runs         reading and naming run directories
    ops          shared numeric ops (MATLAB imresize)
    errors.py    SrlabError, the one-line user error every layer raises
"""
