<?php
// imgforge default application: reads one row from the database primary to
// show that every tier of the stack works. Settings come from boot data,
// rendered by imgforge-agent into /etc/imgforge/db.json.
//
// /cached is the one route the web nodes may cache (for 60 s); every other
// answer, and every error, says no-store. The uWSGI app (app.py) answers
// the same.
header('Content-Type: text/plain; charset=utf-8');
$path = parse_url($_SERVER['REQUEST_URI'] ?? '/', PHP_URL_PATH);
$cacheable = $path === '/cached';
header('Cache-Control: no-store');
$cfgFile = getenv('IMGFORGE_DB_CONFIG') ?: '/etc/imgforge/db.json';
$cfg = json_decode(@file_get_contents($cfgFile), true);
if (!is_array($cfg)) {
    http_response_code(503);
    echo "no database configured yet\n";
    exit;
}
try {
    $dsn = sprintf('mysql:host=%s;port=%d;dbname=%s;charset=utf8mb4',
        $cfg['host'], $cfg['port'] ?? 3306, $cfg['database'] ?? 'imgforge');
    $db = new PDO($dsn, $cfg['user'], $cfg['password'], [PDO::ATTR_TIMEOUT => 3]);
    $row = $db->query('SELECT message FROM greeting ORDER BY id LIMIT 1')->fetch(PDO::FETCH_ASSOC);
    if ($cacheable) {
        header('Cache-Control: public, max-age=60');
    }
    printf("%s (served by %s)\n", $row ? $row['message'] : 'no rows', gethostname());
} catch (Throwable $e) {
    http_response_code(502);
    echo "database error: ", $e->getMessage(), "\n";
}
