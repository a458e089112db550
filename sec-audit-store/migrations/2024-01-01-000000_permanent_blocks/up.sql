-- Permanent blocks: the durable source of truth (stores.md, "Postgres").
-- Revocation is a soft delete, so the table is also the audit trail.
CREATE TABLE permanent_blocks (
    id             BIGSERIAL    PRIMARY KEY,
    scope_type     VARCHAR(32)  NOT NULL,
    scope_value    VARCHAR(255) NOT NULL,
    reason         VARCHAR(255) NOT NULL DEFAULT '',
    rule_name      VARCHAR(128) NOT NULL DEFAULT '',
    status_code    SMALLINT     NOT NULL DEFAULT 429,
    message        VARCHAR(255) NOT NULL,
    metadata       JSONB        NOT NULL DEFAULT '{}',
    created_at     TIMESTAMPTZ  NOT NULL,
    expires_at     TIMESTAMPTZ  NULL,
    revoked_at     TIMESTAMPTZ  NULL,
    revoked_by     VARCHAR(128) NOT NULL DEFAULT '',
    revoked_reason VARCHAR(255) NOT NULL DEFAULT ''
);

CREATE INDEX permanent_blocks_created_at_idx ON permanent_blocks (created_at);
CREATE INDEX permanent_blocks_revoked_at_idx ON permanent_blocks (revoked_at);

-- At most one active row per scope: concurrent bans of one scope converge
-- on a single row (INSERT ... ON CONFLICT on this index).
CREATE UNIQUE INDEX permanent_blocks_active_scope_uniq
    ON permanent_blocks (scope_type, scope_value)
    WHERE revoked_at IS NULL;
