// Package schema holds the staging database schema, shared by postgres-init
// (which creates it when the cluster is first initialised) and the backend
// (which re-applies it on connect, so it also works against any Postgres a
// developer points it at).
package schema

// SQL creates the videos table. It is idempotent and contains no blank
// lines, so it can be fed as one command to a single-user backend run with -j.
const SQL = `CREATE TABLE IF NOT EXISTS videos (
	id         text PRIMARY KEY,
	title      text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);`
