"""hpcjupyter: JupyterLab on an HPC compute node, in your laptop's browser, with one command."""

__version__ = "0.1.0"
