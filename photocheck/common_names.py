"""Given names too common to point at one child on their own, and given names that are also
everyday words ("Summer concert", "Art show"). A listed student's first name found alone in a text
sends the photo to review only when it is NOT in this list (see names.py). Folded form: lower
case, no accents. Extend it locally if a common name of your school's community is missing.
"""
from __future__ import annotations

_NAMES = """
aaron abigail adam adrian aiden alex alexander alexandra alexis ali alice amanda amber amelia amy ana
andrea andrew angel angela anna anne annie anthony antonio arthur ashley austin ava barbara ben benjamin
beth betty bill bob brandon brian caleb cameron carlos caroline carter catherine charles charlie charlotte
chloe chris christian christina christopher claire daniel david diana diego dominic dylan edward eli
elijah elizabeth ella ellie emily emma eric ethan eva evan evelyn faith frank gabriel george grace grant
hannah harry henry hope hunter isaac isabel isabella isaiah ivan jack jackson jacob jake james jane jason
jennifer jessica john jonathan jordan jose joseph joshua joy julia julian justin kate katherine kevin kyle
laura lauren leah lily linda lisa logan lucas lucy luis luke madison maria mark mary mason matthew maya
megan mia michael michelle mike mohamed mohammad mohammed muhammad natalie nathan nicholas noah nora
olivia oliver owen patrick paul peter rachel rebecca richard robert ryan samuel sara sarah scarlett sean
sebastian sofia sophia sophie stephen steven susan thomas tom tyler victoria william wyatt zoe
ahmed aisha amir fatima hassan hussein ibrahim omar yusuf youssef mariam maryam layla leila
juan carmen pablo javier miguel alejandro lucia valentina camila santiago mateo sebastian martina daniela
hans peter anna lena lukas leon paul felix jonas luca marie emma mila finn elias ben noah emil
jean pierre louis louise camille manon hugo arthur jules chloe lea
giulia francesco alessandro lorenzo giuseppe marco sofia
wei li ming yan jun hui
april may june august autumn summer winter spring dawn eve star sky river rain storm
rose lily daisy iris ivy holly hazel violet jasmine poppy ruby pearl amber jade crystal
art bill bob will jack mark frank grant chase hunter mason taylor carter parker cooper tanner
page joy faith grace hope charity patience honor honour merry sunny happy
king prince duke earl major rich guy sterling reed wade dale glen glenn lane ray
angel christian destiny trinity genesis nevaeh harmony melody serenity journey
rowan sage ash forest reef storm
"""

COMMON_FIRST_NAMES: frozenset[str] = frozenset(_NAMES.split())
