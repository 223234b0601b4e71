"""Rollouts: jitted for JAX-native families."""
