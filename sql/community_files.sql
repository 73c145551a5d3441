-- Community health files (code of conduct, security policy, security audits, and
-- contributing guide, changelog, licence), found in HEAD's tree by the facade: no API
-- request, every forge and plain git alike. The agent stages the names of the top
-- level, .github/ and docs/ ('repo_files': {"head", "paths"}); which path is which file
-- is decided here, so a better pattern needs no agent release. NULL means "not found".

CREATE TABLE aveloxis_data.repo_community_files (
    repo_id              bigint PRIMARY KEY REFERENCES aveloxis_data.repos ON DELETE CASCADE,
    head                 text NOT NULL,
    code_of_conduct_file text,
    security_issue_file  text,
    security_audit_file  text,
    contributing_file    text,
    changelog_file       text,
    license_file         text,
    data_collection_date timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE aveloxis_data.repo_community_files IS 'Community health files of each repository''s default branch (NULL: not found)';
SELECT pg_catalog.pg_extension_config_dump('aveloxis_data.repo_community_files', '');

-- The path of a kind of community file among a tree's paths, or NULL. Where forges
-- look first wins (.github/, then the top level, then docs/); the name is matched
-- without regard to case, with any extension.
CREATE FUNCTION aveloxis_ops.community_file(paths text[], kind text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT p.path FROM unnest(paths) WITH ORDINALITY AS p(path, n)
    WHERE regexp_replace(p.path, '^.*/', '') ~* CASE kind
        WHEN 'code_of_conduct' THEN '^code[-_ ]?of[-_ ]?conduct(\.[a-z0-9]+)?$'
        WHEN 'security_policy' THEN '^security(\.[a-z0-9]+)?$'
        WHEN 'security_audit' THEN '^(security[-_ ]?)?audits?([-_ ][^/]*)?(\.[a-z0-9]+)?$'
        WHEN 'contributing' THEN '^contributing(\.[a-z0-9]+)?$'
        WHEN 'changelog' THEN '^(changelog|changes|history|news)(\.[a-z0-9]+)?$'
        WHEN 'license' THEN '^(licen[cs]e|copying)([-_.][^/]*)?$'
      END
      AND p.path ~ '^(\.github/|docs/)?[^/]+$'
    ORDER BY CASE WHEN p.path LIKE '.github/%' THEN 0 WHEN p.path LIKE 'docs/%' THEN 2 ELSE 1 END, p.path
    LIMIT 1
$$;

-- 'repo_files' payloads: the newest one replaces what the repository had.
CREATE FUNCTION aveloxis_ops.drain_repo_files(repo bigint, only_staging_id bigint)
RETURNS aveloxis_ops.drain_counts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    total  bigint;
    newest record;
    paths  text[];
    result aveloxis_ops.drain_counts := ROW(0, 0, 0, 0, 0)::aveloxis_ops.drain_counts;
    files  record;
BEGIN
    SELECT count(*) INTO total FROM pg_temp.drain_rows r
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id);
    SELECT r.doc, r.staging_id INTO newest FROM pg_temp.drain_rows r
    WHERE r.doc IS NOT NULL AND NOT r.pending AND (only_staging_id IS NULL OR r.staging_id = only_staging_id)
    ORDER BY r.staging_id DESC LIMIT 1;
    IF newest IS NULL THEN
        RETURN result;
    END IF;
    IF jsonb_typeof(newest.doc -> 'head') IS DISTINCT FROM 'string'
       OR jsonb_typeof(newest.doc -> 'paths') IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'repo_files: payload needs "head" (a string) and "paths" (an array of strings)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(e.value ORDER BY e.n) INTO paths
    FROM jsonb_array_elements_text(newest.doc -> 'paths') WITH ORDINALITY AS e(value, n);
    SELECT aveloxis_ops.community_file(paths, 'code_of_conduct') AS code_of_conduct_file,
           aveloxis_ops.community_file(paths, 'security_policy') AS security_issue_file,
           aveloxis_ops.community_file(paths, 'security_audit') AS security_audit_file,
           aveloxis_ops.community_file(paths, 'contributing') AS contributing_file,
           aveloxis_ops.community_file(paths, 'changelog') AS changelog_file,
           aveloxis_ops.community_file(paths, 'license') AS license_file
    INTO files;
    INSERT INTO aveloxis_data.repo_community_files AS f
        (repo_id, head, code_of_conduct_file, security_issue_file, security_audit_file, contributing_file,
         changelog_file, license_file)
    VALUES (repo, newest.doc ->> 'head', files.code_of_conduct_file, files.security_issue_file,
            files.security_audit_file, files.contributing_file, files.changelog_file, files.license_file)
    ON CONFLICT (repo_id) DO UPDATE
        SET head = EXCLUDED.head, code_of_conduct_file = EXCLUDED.code_of_conduct_file,
            security_issue_file = EXCLUDED.security_issue_file, security_audit_file = EXCLUDED.security_audit_file,
            contributing_file = EXCLUDED.contributing_file, changelog_file = EXCLUDED.changelog_file,
            license_file = EXCLUDED.license_file, data_collection_date = EXCLUDED.data_collection_date
        WHERE (f.head, f.code_of_conduct_file, f.security_issue_file, f.security_audit_file, f.contributing_file,
               f.changelog_file, f.license_file)
              IS DISTINCT FROM
              (EXCLUDED.head, EXCLUDED.code_of_conduct_file, EXCLUDED.security_issue_file,
               EXCLUDED.security_audit_file, EXCLUDED.contributing_file, EXCLUDED.changelog_file,
               EXCLUDED.license_file);
    IF FOUND THEN
        result.updated := 1;
    END IF;
    result.unchanged := total - result.updated;
    RETURN result;
END
$$;
