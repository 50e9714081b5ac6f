"""emotion2vec: self-supervised speech emotion representations (pretraining, extraction, probing).

Install torch first, pinned (an unpinned torch pulls a multi-GB CUDA build):
    pip install torch==2.13.0 && pip install -e .[test]
The ``train`` extra adds fairseq-fixed (build it with --no-build-isolation after torch, cython and numpy);
``make test`` / ``make demo`` do all of this.
"""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="emotion2vec",
    version="0.1.0",
    description="Self-supervised pretraining, feature extraction and linear probing of speech emotion representations",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["emotion2vec", "emotion2vec.*"]),
    package_data={"emotion2vec": ["py.typed", "serve/page/*"]},
    install_requires=[
        "torch>=2.1",
        "numpy>=1.24",
        "soundfile>=0.12",
        "soxr>=0.3.7",
        "safetensors>=0.4",
        "omegaconf>=2.1",
        "scikit-learn>=1.2",
        "scipy>=1.10",
        "matplotlib>=3.6",
        "tqdm>=4.60",
    ],
    extras_require={
        "train": ["fairseq-fixed==0.12.3.1", "tensorboard>=2.10"],
        "hf": ["transformers>=4.40"],
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18"],
        "opensmile": ["opensmile>=2.5"],
        "media": ["av>=12"],
        "umap": ["umap-learn>=0.5"],
        # `emotion2vec serve`: the ASGI app and its OpenAPI description, the server, the multipart parser
        "serve": ["fastapi>=0.110", "uvicorn>=0.30", "python-multipart>=0.0.18"],
        # the service's tests: an HTTP client (in process and against a real server) and a browser driver (it
        # drives the operating system's Chromium; no browser download)
        "web-test": ["httpx>=0.27", "playwright>=1.40"],
        # eSpeak NG (library + voice data in the wheel) for `emotion2vec linguistics`: no download at run time
        "tts": ["espeakng-loader>=0.2"],
        "docs": ["mkdocs>=1.6"],
        # hypothesis: the bad-input suite generates malformed data.tsv / folds.json / results.json / index.tsv
        "test": ["pytest>=7", "pytest-timeout>=2.1", "tensorboard>=2.10", "hypothesis>=6.80"],
    },
    entry_points={"console_scripts": ["emotion2vec=emotion2vec.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
