"""Deployment files: docker-compose.yml, the Dockerfiles we own, the kustomize tree under deploy/, `make run`."""
