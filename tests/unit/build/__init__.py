"""Unit tests of the Dockerfile front end: parser, words, .dockerignore."""
