-- A user has one password row. Logins used to re-hash and append a row each time; keep the
-- newest row of each user (the one logins verify against) and drop the rest.
UPDATE user_passwords SET upgraded_from_id = NULL;
DELETE FROM user_passwords
WHERE EXISTS (
    SELECT 1 FROM user_passwords AS newer
    WHERE newer.user_id = user_passwords.user_id
      AND (newer.created_at > user_passwords.created_at
           OR (newer.created_at = user_passwords.created_at
               AND newer.user_password_id > user_passwords.user_password_id))
);
