"""Building images from Dockerfiles: parsing, words, the build context and the build itself."""
