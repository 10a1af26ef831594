-- imgforge default application schema, loaded on the primary into the
-- application's database (see /usr/share/imgforge/templates/db/primary.sql.tmpl).
CREATE TABLE IF NOT EXISTS greeting (
  id INT PRIMARY KEY AUTO_INCREMENT,
  message VARCHAR(200) NOT NULL
);
INSERT INTO greeting (message)
  SELECT 'hello from the imgforge database' FROM DUAL
  WHERE NOT EXISTS (SELECT 1 FROM greeting);
