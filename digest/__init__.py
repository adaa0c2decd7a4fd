"""digest: themed, summarised, emailable digests of new research papers."""

__version__ = "0.1.0"
USER_AGENT = f"digest/{__version__} (+https://github.com/digest-papers/digest; research-paper digests)"
