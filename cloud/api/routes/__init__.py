"""The API's route modules, one per resource; each builds answers from `cloud.services` only."""
