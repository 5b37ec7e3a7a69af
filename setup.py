"""actlumos-jax: ActLumos dark-video action recognition in JAX/Flax."""

import setuptools

# Exact pins: jax/flax/orbax/grain APIs moved a lot across 0.10-0.12, and a
# reproduction library has to build the same program next year.
INSTALL_REQUIRES = [
    "jax==0.12.0.1",
    "jaxlib==0.12.0.1",
    "flax==0.12.12",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    # The gamma stream (enhance.gamma_correction).
    "dm-pix==0.4.5",
    "tensorflow-datasets==4.9.10",
    "array-record==0.8.6",
    # The factored convolution's reshapes and the token pooling (models/).
    "einops==0.8.2",
    "absl-py==2.5.1",
    "ml-collections==1.1.0",
    "av==19.0.2",
    "numpy>=2.0,<3",
    "tqdm==4.70.1",
    "tensorboardX==2.6.5",
    # Crop-resize and YUV->RGB of decoded frames: the host pipeline's hot loop.
    "opencv-python-headless==5.0.0.93",
    # The figures: bench/gate_vs_light.py, bench/teacher_table.py.
    "matplotlib==3.11.2",
    # jax.export serialises the exported student (actlumos-export) with it.
    "flatbuffers==25.12.19",
]

EXTRAS_REQUIRE = {
    "cuda12": ["jax[cuda12]==0.12.0.1"],
    "tpu": ["jax[tpu]==0.12.0.1"],
    # torch only reads the released .pth files; it never runs in training.
    "convert": ["torch==2.14.1"],
    "test": [
        "pytest==9.2.0",
        # Two workers, one test file each: the subprocess tests of main.py overlap with the rest.
        "pytest-xdist==3.8.0",
        "torch==2.14.1",
        "torchvision==0.29.1",
        "scipy>=1.13",
    ],
}

setuptools.setup(
    name="actlumos-jax",
    version="0.1.0",
    description="ActLumos: dark-video action recognition (teacher-student, DFF, SupCon, SSL, KD) in JAX/Flax.",
    python_requires=">=3.12",
    packages=setuptools.find_packages(include=["actlumos_jax", "actlumos_jax.*", "data_pipelines", "data_pipelines.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": [
        "actlumos-convert=actlumos_jax.convert:run",
        "actlumos-predict=actlumos_jax.inference.predict:main",
        "actlumos-eval=actlumos_jax.inference.evaluate:main",
        "actlumos-export=actlumos_jax.inference.export:main",
        "actlumos-report=actlumos_jax.inference.report:main",
    ]},
)
