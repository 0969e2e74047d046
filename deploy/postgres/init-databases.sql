-- Runs once, when the PostgreSQL data directory is first initialised (docker-entrypoint-initdb.d).
-- POSTGRES_DB creates `optuna` (the study storage); MLflow gets a database of its own because
-- both keep an `alembic_version` table and would migrate over each other in one database.
CREATE DATABASE mlflow;
