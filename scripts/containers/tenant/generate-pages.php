<?php
// Writes a MediaWiki XML dump of N generated pages to stdout: seeded, so every
// build imports the same text. Pages link to each other and use one template.
$count = (int)($argv[1] ?? 300);
$words = explode(' ', 'alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike '
  . 'november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu memory '
  . 'kernel page merge scan tenant apache database query cache table index server process');
$state = 42;
function next_random(): int {
  global $state;
  $state = ($state * 1103515245 + 12345) & 0x7fffffff;
  return $state;
}
function sentence(array $words, int $count): string {
  $out = [];
  for ($i = 0; $i < 8 + next_random() % 12; $i++) {
    $word = $words[next_random() % count($words)];
    $out[] = next_random() % 9 === 0 ? '[[Page ' . (next_random() % $count + 1) . '|' . $word . ']]' : $word;
  }
  return ucfirst(implode(' ', $out)) . '.';
}
function page_xml(string $title, string $text, int $id): string {
  return "  <page>\n    <title>" . htmlspecialchars($title, ENT_XML1) . "</title>\n    <ns>" . (str_starts_with($title, 'Template:') ? 10 : 0)
    . "</ns>\n    <id>$id</id>\n    <revision>\n      <id>$id</id>\n      <timestamp>2026-01-01T00:00:00Z</timestamp>\n"
    . "      <contributor><username>Admin</username><id>1</id></contributor>\n      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
    . '      <text xml:space="preserve">' . htmlspecialchars($text, ENT_XML1) . "</text>\n    </revision>\n  </page>\n";
}
echo '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.11/" version="0.11" xml:lang="en">' . "\n";
echo page_xml('Template:Infobox', "{| class=\"wikitable\"\n! Topic\n| {{{topic}}}\n|-\n! Rank\n| {{{rank}}}\n|}", 1000000);
for ($p = 1; $p <= $count; $p++) {
  $text = '{{Infobox|topic=' . $words[next_random() % count($words)] . '|rank=' . $p . "}}\n";
  for ($s = 0; $s < 4; $s++) {
    $text .= "\n== Section " . ($s + 1) . " ==\n";
    for ($para = 0; $para < 3; $para++) {
      $sentences = [];
      for ($k = 0; $k < 5; $k++) $sentences[] = sentence($words, $count);
      $text .= implode(' ', $sentences) . "\n\n";
    }
  }
  $text .= "[[Category:Generated]]\n";
  echo page_xml("Page $p", $text, 1000000 + $p);
}
echo "</mediawiki>\n";
