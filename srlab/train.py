"""`python -m srlab.train` as before the by-role layout (job scripts call it); the command
lives in `srlab/cli/train.py`. Nothing else stays at the package root for compatibility."""
from srlab.cli.train import cli

if __name__ == "__main__":
    cli()
